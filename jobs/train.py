"""Train one registered model on the window cache (or record why it cannot run here).

Under torchrun (make train-<model> NPROC=4) every process runs this; rank 0 logs and writes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from overnight import distributed
from overnight.cli import job_parser, setup
from overnight.training.fit import train_model

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--model", required=True,
                        help="a registered model (python -m overnight.models.catalog lists "
                             "them)")
    parser.add_argument("--windows", required=True, type=Path, help="window cache (HDF5)")
    parser.add_argument("--split", required=True, type=Path, help="subject split (JSON)")
    parser.add_argument("--features", type=Path, default=None,
                        help="feature cache (HDF5), for a model that reads features")
    parser.add_argument("--out", required=True, type=Path, help="model folder to write")
    args = parser.parse_args(argv)
    config = setup(args)
    if not distributed.world().is_main:
        logging.getLogger().setLevel(logging.WARNING)  # one voice in the log: rank 0's
    meta = train_model(args.model, args.windows, args.split, args.out, config.train,
                       args.features, gbm=config.gbm, extra_models=config.night.extra_models)
    if meta.get("not_run"):
        return 0  # recorded in model.json: the comparison and the report show why
    log.info("%s: tune NRMSE %.4f (epoch %d/%d, %.0f s) -> %s", meta["model"],
             meta["best_tune_nrmse"], meta["best_epoch"], meta["epochs_run"],
             meta["train_seconds"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
