"""The papers' claims as statements to test: which cells they compare and against what margin.

A claim is "mean over tasks of A − mean over tasks of B ≥ margin" in points; `report/claims.py` tests it. The
LoRA paper's own claims are here; each of LoRA's successors declares its paper's claim with the method
(`methods.registry.successor_claims`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lora_repro.paper.names import ADPT_P, BITFIT, FT, LORA

__all__ = ["BEATS", "MARGINS", "MATCHES", "RANK_CLAIMS", "TABLE2_CLAIMS", "Claim"]

# The one rule for margins, from how a paper words its claim: "matches", "on par", "within", "comparable" (or
# above) is non-inferiority, tested against a 1-point margin; "beats", "outperforms", "better" is superiority,
# tested against 0.
MATCHES, BEATS = "matches or exceeds", "beats"
MARGINS = {MATCHES: -1.0, BEATS: 0.0}


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, as `mean over tasks of A − mean over tasks of B ≥ margin` (points).

    The margin follows from the claim's wording (`MARGINS`): a paper that says A matches or exceeds B is tested
    against −1 point, one that says A beats B against 0.
    """

    name: str
    text: str
    a: str  # a cell key: a method label (`LoRA`) or a LoRA setting (`q,v r=4`)
    b: str
    kind: str  # MATCHES or BEATS
    source: str  # where the paper makes it, in its words
    per_task: bool = True  # also one line per task
    scale: str = ""  # the setting the paper's claim comes from, set beside ours (`scale_note`)

    @property
    def margin(self) -> float:
        """The claim's margin in points, from its kind."""
        return MARGINS[self.kind]


TABLE2_CLAIMS = (
    Claim("i", "LoRA matches or exceeds full fine-tuning", LORA, FT, MATCHES,
          "Abstract and Table 2: LoRA \"performs on-par or better than finetuning\" on RoBERTa and DeBERTa"),
    Claim("ii", "LoRA matches or exceeds BitFit", LORA, BITFIT, MATCHES,
          "Table 2: LoRA on par or better than the baselines, BitFit among them"),
    Claim("iii", "LoRA matches or exceeds adapters with equal or fewer trainable parameters", LORA, ADPT_P, MATCHES,
          "Table 2: LoRA 0.8M vs AdptP/AdptH 0.8M on RoBERTa-large, on par or better"),
)
RANK_CLAIMS = (
    Claim("iv", "At a fixed budget, Wq,Wv at r=4 beats Wq alone at r=8", "q,v r=4", "q r=8", BEATS,
          "Table 5: adapting two weight types at a lower rank \"yields the best performance\"", per_task=False),
    Claim("v", "r=1 on Wq,Wv matches or exceeds r=64", "q,v r=1", "q,v r=64", MATCHES,
          "Table 6: \"LoRA already performs competitively with a very small r\"", per_task=False),
)

