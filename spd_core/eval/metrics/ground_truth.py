"""MMCS and ML2R: how well subcomponents match the columns of a known target matrix (TMS)."""

from __future__ import annotations

from torch import Tensor


def subcomponent_columns(U: Tensor, V: Tensor) -> Tensor:
    """s[c, j] = V[c, j] · U[c] : (C, n_in, d_out), the part of column j that subcomponent c writes."""
    return V.unsqueeze(-1) * U.unsqueeze(1)


def mmcs_ml2r(U: Tensor, V: Tensor, W: Tensor, eps: float = 1e-12) -> dict[str, float]:
    """W (d_out, n_in). For each input j: max over c of cos(s[c, j], W[:, j]) (MMCS), and the norm
    ratio ‖s[c*, j]‖ / ‖W[:, j]‖ at the best-matching c* (ML2R). Means and stds over j."""
    s = subcomponent_columns(U.float(), V.float())  # (C, n_in, d_out)
    w = W.float().T  # (n_in, d_out)
    s_norm = s.norm(dim=-1)
    w_norm = w.norm(dim=-1)
    cos = (s * w).sum(-1) / ((s_norm + eps) * (w_norm + eps))  # (C, n_in)
    best_cos, best_c = cos.max(0)
    ratio = s_norm.gather(0, best_c.unsqueeze(0)).squeeze(0) / w_norm
    return {
        "mmcs": best_cos.mean().item(),
        "mmcs_std": best_cos.std(unbiased=False).item(),
        "ml2r": ratio.mean().item(),
        "ml2r_std": ratio.std(unbiased=False).item(),
    }
