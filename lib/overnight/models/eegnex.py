"""braindecode's EEGNeX, the challenge's reference model, as a peer row."""

from __future__ import annotations

import torch
from torch import nn

from overnight.models.base import ModelUnavailable, RTModel, register


@register("eegnex", inputs=("eeg",))
class EEGNeXPeer(RTModel):
    """braindecode's EEGNeX, the challenge's reference model, as a peer row: its own
    architecture and defaults, inside the same safe input and output as every model.

    braindecode is optional (requirements-eegnex.txt): it imports torchaudio, which is built
    for one torch release only. The scorer's image has it.
    """

    extra_requirement = "braindecode"

    def __init__(self, n_chans: int = 129, n_times: int = 200, sfreq_hz: float = 100.0,
                 normalization: str = "train") -> None:
        super().__init__(n_chans, normalization)
        eegnex = self.network_class()
        self.net = eegnex(n_chans=n_chans, n_outputs=1, n_times=n_times, sfreq=sfreq_hz)

    @staticmethod
    def network_class() -> type[nn.Module]:
        """braindecode's EEGNeX; ``ModelUnavailable`` says why it cannot be imported."""
        try:
            from braindecode.models import EEGNeX
        except Exception as exc:  # torchaudio's own import errors are OSErrors, not only
            raise ModelUnavailable(  # ImportErrors
                f"braindecode's EEGNeX cannot be imported ({type(exc).__name__}: {exc}); "
                "install requirements-eegnex.txt (make setup-eegnex) or use a container "
                "image") from exc
        return EEGNeX

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            cls.network_class()
        except ModelUnavailable as exc:
            return str(exc)
        return None

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.scale_input(x))
