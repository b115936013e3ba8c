"""The value model of the local trainer, for algorithms that learn one (`alg.needs_critic`).

The critic is a copy of the base checkpoint's backbone (the transformer without its LM head) and a float32
scalar value head on the last hidden state, as the critics of OpenRLHF and verl are built. V_t, the value
of response token t, is read at the position whose logits predict token t (prompt length - 1 + t), so
values align with response tokens exactly as `trainer.response_logp` aligns log-probabilities: V_0 is the
value of the prompt alone, as in verl's `values[:, -response_length - 1:-1]`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fipo_bench import models
from fipo_bench.results import CRITIC_OPTIMIZER, CRITIC_WEIGHTS
from fipo_bench.sampling import scoring_inputs


class ValueModel(torch.nn.Module):
    """Backbone + Linear(hidden, 1) value head (float32 even under autocast)."""

    def __init__(self, base_checkpoint: str | Path, head_seed: int):
        super().__init__()
        self.backbone = models.load_model(str(base_checkpoint)).get_decoder()
        hidden = self.backbone.config.hidden_size
        self.head = torch.nn.Linear(hidden, 1, dtype=torch.float32)
        # OpenRLHF's value head init (get_llm_for_sequence_regression: normal, std 1 / (hidden + 1)), bias 0:
        # the first values are ~0, the middle of the +-1 rewards.
        with torch.no_grad():
            generator = torch.Generator().manual_seed(head_seed)
            self.head.weight.normal_(0.0, 1.0 / (hidden + 1), generator=generator)
            self.head.bias.zero_()

    def save(self, directory: Path, optimizer: torch.optim.Optimizer) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(directory / CRITIC_WEIGHTS))
        torch.save(optimizer.state_dict(), directory / CRITIC_OPTIMIZER)

    def load(self, directory: Path, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        missing = [name for name in (CRITIC_WEIGHTS, CRITIC_OPTIMIZER) if not (directory / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{directory}: no {' or '.join(missing)} (a checkpoint of an algorithm "
                                    "with a critic holds the critic's weights and optimizer state)")
        self.load_state_dict(load_file(str(directory / CRITIC_WEIGHTS), device=str(device)))
        state = torch.load(directory / CRITIC_OPTIMIZER, map_location=device, weights_only=True)
        optimizer.load_state_dict(state)


def response_values(critic: ValueModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                    response_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """V of each response token: [N, P] left-padded prompts + [N, R] responses -> [N, R] float32
    (0 on padding)."""
    prompt_len, response_len = prompt_ids.shape[1], response_ids.shape[1]
    hidden = critic.backbone(**scoring_inputs(prompt_ids, prompt_mask, response_ids, response_mask),
                             use_cache=False).last_hidden_state
    hidden = hidden[:, prompt_len - 1:prompt_len - 1 + response_len]  # the states that predict token t
    with torch.autocast(hidden.device.type, enabled=False):
        values = critic.head(hidden.float()).squeeze(-1)
    return values * response_mask
