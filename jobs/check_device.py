"""Log the versions and the compute device the jobs will see; fail when a GPU was asked
for and torch sees none (the first step of the preflight)."""

from __future__ import annotations

import logging

from overnight.cli import job_parser, setup
from overnight.provenance import environment

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--gpu", choices=("amd", "nvidia", "none"), default="none",
                        help="the GPU the night expects (none: the CPU is fine)")
    args = parser.parse_args(argv)
    setup(args)
    import torch

    env = environment()
    log.info("environment: %s", ", ".join(f"{k} {v}" for k, v in env.items()))
    if args.gpu != "none" and not torch.cuda.is_available():
        build = f"HIP {torch.version.hip}" if torch.version.hip else f"CUDA {torch.version.cuda}"
        log.error("GPU=%s but torch (%s, %s) sees no GPU: check the driver, the devices "
                  "passed to the container and HSA_OVERRIDE_GFX_VERSION for consumer AMD "
                  "cards", args.gpu, torch.__version__, build)
        return 1
    log.info("device: %s", env["device"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
