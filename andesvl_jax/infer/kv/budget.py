"""KV budgets: a fraction of each prompt kept, or a token count, and how reports print them.

kvpress speaks of the fraction *removed* (`compression_ratio`); we take the fraction *kept* and
print both. A fraction keeps int(length * fraction) tokens of a prompt (kvpress's
int(k_len * (1 - compression_ratio)) with fraction = 1 - compression_ratio).
"""

from __future__ import annotations

import dataclasses
import numbers


@dataclasses.dataclass(frozen=True)
class Budget:
    """fraction in (0, 1] of each prompt kept, or tokens >= 1 kept per prompt (one is set)."""

    fraction: float | None = None
    tokens: int | None = None

    @classmethod
    def parse(cls, value) -> Budget:
        """0.25 -> 25 % kept; 512 (an int) -> 512 tokens kept; a string of either also works."""
        if isinstance(value, Budget):
            return value
        if isinstance(value, str):
            text = value.strip()
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
                except ValueError:
                    raise ValueError(
                        f"kv budget {text!r} is neither a fraction nor a token count"
                    ) from None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(
                f"kv budget must be a fraction in (0, 1] or a token count, got {value!r}"
            )
        if isinstance(value, numbers.Integral) and value > 1:
            return cls(tokens=int(value))
        value = float(value)
        if not 0 < value <= 1:
            raise ValueError(
                f"kv budget {value} as a fraction kept must be in (0, 1] (give a token count as "
                "an integer > 1, e.g. 512)"
            )
        return cls(fraction=value)

    def kept(self, length: int) -> int:
        """Tokens of a `length`-token prompt this budget keeps (before a policy's floor)."""
        if self.tokens is not None:
            return min(length, self.tokens)
        return min(length, int(length * self.fraction))

    def __str__(self) -> str:
        if self.tokens is not None:
            return f"{self.tokens} tokens"
        return f"{100 * self.fraction:g} % kept ({100 * (1 - self.fraction):g} % removed)"
