"""Prompt templates for evaluation and RL rollouts.

- `dapo`: the prompt of DAPO-Math-17k (Yu et al. 2025), used by DAPO and FIPO for training and AIME
  evaluation; the answer goes on a last line `Answer: ...`.
- `boxed`: the DeepSeek-R1 / Qwen2.5-Math instruction, answer in `\\boxed{}`.
- `tags`: for procedural tasks (`rg:` datasets, reasoning-gym's answer format): reason, then the final
  answer alone between `<answer>` and `</answer>`.
- `raw`: the problem text alone (for models trained on another format).
Any other string containing `{problem}` is used as a custom template.
"""

from __future__ import annotations

TEMPLATES: dict[str, str] = {
    "dapo": (
        "Solve the following math problem step by step. The last line of your response should be of the "
        "form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
        "{problem}\n\n"
        'Remember to put your answer on its own line after "Answer:".'
    ),
    "boxed": "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
    "tags": (
        "{problem}\n\nReason step by step, then give your final answer alone between <answer> and "
        "</answer> tags."
    ),
    "raw": "{problem}",
}


def format_prompt(problem: str, template: str = "dapo", tokenizer=None) -> str:
    """The prompt text for `problem`: the template filled in, then wrapped in the tokenizer's chat
    template (one user turn + generation prompt) when the tokenizer has one."""
    if template in TEMPLATES:
        pattern = TEMPLATES[template]
    elif "{problem}" in template:
        pattern = template
    else:
        raise ValueError(f"unknown prompt template {template!r}; known: {', '.join(TEMPLATES)}, "
                         "or a string containing '{problem}'")
    # str.replace, not str.format: problem statements are full of braces.
    text = pattern.replace("{problem}", "\0").replace("{{", "{").replace("}}", "}").replace("\0", problem)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text
