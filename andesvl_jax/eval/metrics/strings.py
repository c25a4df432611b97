"""String distances the text metrics are built on (edit distance, LCS, longest common substring).

Own implementations: a few lines each, exact, and no dependency for the short answers scored here.
"""

from __future__ import annotations

from collections.abc import Sequence


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance (insert, delete, substitute; each cost 1) of two sequences."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence (not necessarily contiguous)."""
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if ca == cb else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def longest_common_substring(a: str, b: str) -> str:
    """The longest contiguous string occurring in both a and b (the first one found on ties)."""
    best_len, best_end = 0, 0
    prev = [0] * (len(b) + 1)
    for i, ca in enumerate(a, start=1):
        cur = [0] * (len(b) + 1)
        for j, cb in enumerate(b, start=1):
            if ca == cb:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best_len:
                    best_len, best_end = cur[j], i
        prev = cur
    return a[best_end - best_len : best_end]
