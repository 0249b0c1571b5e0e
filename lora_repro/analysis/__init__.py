"""The paper's Section 7 on finished LoRA runs: how the learned update relates across ranks, seeds and to W.

`subspace` holds the two measures in closed form (the normalized subspace similarity φ of Figures 3-4 and
the projection norms of Table 7); `runs` reads LoRA factors from run records; `cli` is `lora-repro analyze`.
"""
