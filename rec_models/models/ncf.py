"""Neural Collaborative Filtering after He et al. 2017: GMF, MLP, and NeuMF fusing them.

GMF's score h^T (p_u * q_i) is a dot product of (p_u * h) and q_i, so GMF is scored like MF. The MLP
tower (and so NeuMF) scores a (user, video) pair with a network: user recommendations run that
network on every pair in blocks (costly online, fine in a nightly batch: 100k users x 20k videos took
~110 s on 2 cores), and past ``full_scoring_max_pairs`` on the exact top ``rerank_candidates`` of the
pretrained GMF (1M x 100k pairs would take hours). NeuMF's similar videos come from its GMF video embeddings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from rec_models.config import NeuMFConfig
from rec_models.data.dataset import Dataset, Split
from rec_models.models.base import USER_CHUNK, FitReport, unit_rows
from rec_models.models.mf import pair_l2
from rec_models.models.neural import NeuralRecommender, weights
from rec_models.names import GMF as GMF_NAME
from rec_models.names import MLP as MLP_NAME
from rec_models.names import NEUMF
from rec_models.topn import DEFAULT_BLOCK_BYTES, TopNBlock, pick_device, top_n

log = logging.getLogger(__name__)

# Elements of the (users x videos x first hidden layer) activations one scoring step may hold.
_SCORING_ELEMENTS = 16 * 2**20


def mlp_widths(dim: int, layers: int) -> list[int]:
    """Input 2*dim (user and video embeddings concatenated), then halving: 2d -> d -> d/2 ..."""
    return [max(1, 2 * dim >> i) for i in range(layers + 1)]


class GMFPart(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user = nn.Embedding(n_users, dim, sparse=True)
        self.item = nn.Embedding(n_items, dim, sparse=True)
        nn.init.normal_(self.user.weight, std=0.01)
        nn.init.normal_(self.item.weight, std=0.01)

    def forward(self, users, items):
        return self.combine(self.user(users), self.item(items))

    @staticmethod
    def combine(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return u * i


class MLPPart(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, layers: int):
        super().__init__()
        self.user = nn.Embedding(n_users, dim, sparse=True)
        self.item = nn.Embedding(n_items, dim, sparse=True)
        nn.init.normal_(self.user.weight, std=0.01)
        nn.init.normal_(self.item.weight, std=0.01)
        widths = mlp_widths(dim, layers)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out_width = widths[-1]

    def forward(self, users, items):
        return self.tower(self.user(users), self.item(items))

    def combine(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.tower(u, i)

    def tower(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        # The first layer on [u; i] splits into W_u u + W_i i: computed once per user and per video.
        first = self.layers[0]
        d = u.shape[-1]
        h = torch.relu(u @ first.weight[:, :d].T + i @ first.weight[:, d:].T + first.bias)
        for layer in self.layers[1:]:
            h = torch.relu(layer(h))
        return h


class NCFModule(nn.Module):
    """variant: "gmf", "mlp" or "neumf" (both parts, outputs concatenated before the last layer)."""

    def __init__(self, variant: str, n_users: int, n_items: int, dim: int, layers: int):
        super().__init__()
        self.variant = variant
        self.gmf = GMFPart(n_users, n_items, dim) if variant in ("gmf", "neumf") else None
        self.mlp = MLPPart(n_users, n_items, dim, layers) if variant in ("mlp", "neumf") else None
        width = (dim if self.gmf else 0) + (self.mlp.out_width if self.mlp else 0)
        self.out = nn.Linear(width, 1)
        if variant == "neumf":
            # The pretrained GMF's vectors (user p*h, video q): the retriever whose top candidates the
            # network re-ranks on large worlds. Jointly trained, NeuMF's own GMF part drifts and, at
            # 1M users, retrieved poorly (NDCG@10 0.009 vs 0.042 for the network on every pair).
            self.register_buffer("retrieval_user", torch.zeros(n_users, dim))
            self.register_buffer("retrieval_item", torch.zeros(n_items, dim))
            self.register_buffer("has_retrieval", torch.zeros((), dtype=torch.bool))

    def forward(self, users, items):
        """Logits of (user, video) pairs."""
        return self.forward_with_l2(users, items[:, None])[0][:, 0]

    def forward_with_l2(self, users, items):
        """users (B,), items (B, m): logits (B, m) and the mean L2 penalty per pair of the looked-up
        embeddings (each user looked up once for its m videos)."""
        outputs, penalty = [], 0.0
        for part in (self.gmf, self.mlp):
            if part is not None:
                u, i = part.user(users), part.item(items)
                outputs.append(part.combine(u[:, None, :], i))
                penalty = penalty + pair_l2(u, i)
        return self.out(torch.cat(outputs, -1)).squeeze(-1), penalty

    @torch.no_grad()
    def score_grid(self, users: torch.Tensor, n_items: int) -> torch.Tensor:
        """Logits of every (user, video) pair for these users and every video: the forward pass on a
        grid. The output layer splits over its concatenated input, out([g; h]) = w_g . g + w_h . h + b,
        so the GMF part is one matmul, and the MLP tower runs on video slices that bound memory."""
        all_items = torch.arange(n_items, device=users.device)
        d_gmf = self.gmf.user.embedding_dim if self.gmf is not None else 0
        w_out = self.out.weight[0]
        scores = torch.empty(len(users), n_items, device=users.device)
        if self.gmf is not None:
            scores[:] = (self.gmf.user(users) * w_out[:d_gmf]) @ self.gmf.item(all_items).T
        else:
            scores.zero_()
        if self.mlp is not None:
            u_emb = self.mlp.user(users)
            step = max(1, _SCORING_ELEMENTS // max(1, len(users) * self.mlp.layers[0].out_features))
            for start in range(0, n_items, step):
                items = all_items[start:start + step]
                h = self.mlp.tower(u_emb[:, None, :], self.mlp.item(items)[None, :, :])
                scores[:, start:start + step] += h @ w_out[d_gmf:]
        return scores + self.out.bias


class NCF(NeuralRecommender):
    """One class for the three variants; ``name`` picks which."""

    name = NEUMF
    variant = "neumf"
    config_class = NeuMFConfig
    dot_product = False
    id_tables = {f"{part}.{table}.weight": (space, "mean") for part in ("gmf", "mlp")
                 for table, space in (("user", "user"), ("item", "video"))} | \
        {"retrieval_user": ("user", "mean"), "retrieval_item": ("video", "mean")}
    carried_buffers = ("has_retrieval",)

    def build_module(self, shapes):
        return NCFModule(self.variant, shapes["n_users"], shapes["n_items"], self.config.dim, self.config.mlp_layers)

    def fit(self, data: Dataset, *, before: float | None = None, validation: Split | None = None,
            epochs: int | None = None) -> FitReport:
        return self._fit_stages(data, before, validation, {"gmf": epochs, "mlp": epochs, "neumf": epochs})

    def refit(self, data: Dataset, chosen: FitReport) -> FitReport:
        """Every stage (GMF, MLP, NeuMF) for the epochs it early-stopped at in ``chosen``."""
        if not chosen.stage_epochs:
            return super().refit(data, chosen)
        return self._fit_stages(data, None, None, chosen.stage_epochs)

    def _fit_stages(self, data: Dataset, before: float | None, validation: Split | None,
                    stages: dict[str, int | None]) -> FitReport:
        if self.variant != "neumf" or not self.config.pretrain:
            return super().fit(data, before=before, validation=validation, epochs=stages[self.variant])
        # The paper's pretraining: GMF and MLP trained alone, their weights initialise NeuMF, whose
        # output layer is the two output layers side by side, each halved (alpha = 0.5).
        gmf, mlp = GMF(self.config, self.seed), MLP(self.config, self.seed)
        started = time.perf_counter()
        gmf_report = gmf.fit(data, before=before, validation=validation, epochs=stages["gmf"])
        mlp_report = mlp.fit(data, before=before, validation=validation, epochs=stages["mlp"])
        self.shapes = self.shapes_for(data)
        self.module = self.build_module(self.shapes)
        with torch.no_grad():
            self.module.gmf.load_state_dict(gmf.module.gmf.state_dict())
            self.module.mlp.load_state_dict(mlp.module.mlp.state_dict())
            self.module.out.weight.copy_(torch.cat([gmf.module.out.weight, mlp.module.out.weight], 1) * 0.5)
            self.module.out.bias.copy_((gmf.module.out.bias + mlp.module.out.bias) * 0.5)
            self.module.retrieval_user.copy_(torch.as_tensor(gmf._gmf_user(np.arange(self.shapes["n_users"]))))
            self.module.retrieval_item.copy_(gmf.module.gmf.item.weight)
            self.module.has_retrieval.fill_(True)
        report = self.train_module(data, data.interactions(before), validation, stages["neumf"],
                                   learning_rate=self.config.learning_rate / 2)
        report.stage_epochs = {"gmf": gmf_report.best_epoch, "mlp": mlp_report.best_epoch, "neumf": report.best_epoch}
        report.history = [{"pretrain": "gmf", **h} for h in gmf_report.history] + \
                         [{"pretrain": "mlp", **h} for h in mlp_report.history] + report.history
        report.seconds = time.perf_counter() - started
        return report

    def continue_learning_rate(self) -> float:
        # NeuMF after pretraining trains at half the rate (its last stage); warm starts continue it so.
        pretrained = self.variant == "neumf" and self.config.pretrain
        return self.config.learning_rate / 2 if pretrained else self.config.learning_rate

    # GMF part as vectors: user p*h, video q (used by similarity, and by scoring for GMF alone).
    def _gmf_user(self, users: np.ndarray) -> np.ndarray:
        h = self.module.out.weight.detach().cpu().numpy()[0, : self.config.dim]
        return weights(self.module.gmf.user)[users] * h

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        if self.variant != "gmf":
            raise TypeError(f"{self.name} scores are not a dot product: use score_rows()")
        return self._gmf_user(users)

    def item_vectors(self) -> np.ndarray:
        if self.variant == "mlp":
            raise TypeError("the MLP has no item vectors")
        return weights(self.module.gmf.item)

    def similarity_vectors(self) -> np.ndarray:
        if self.variant == "mlp":
            raise TypeError("the MLP has no notion of similar videos")
        return unit_rows(weights(self.module.gmf.item))

    def reranks(self, data: Dataset) -> bool:
        """Whether user lists re-rank GMF candidates instead of scoring every pair with the network."""
        return self.variant == "neumf" and data.n_users * data.n_videos > self.config.full_scoring_max_pairs

    def recommend(self, data: Dataset, users: np.ndarray, k: int, *, seen=None, allowed_items=None,
                  block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[TopNBlock]:
        if not self.reranks(data):
            yield from super().recommend(data, users, k, seen=seen, allowed_items=allowed_items,
                                         block_bytes=block_bytes)
            return
        # Candidates: the exact top-C of the pretrained GMF (else of the GMF part); then the whole
        # network scores those C pairs.
        users = np.asarray(users)
        n_candidates = min(self.shapes["n_items"], max(k, self.config.rerank_candidates))
        pretrained = bool(self.module.has_retrieval)
        item_vectors = self.module.retrieval_item.numpy() if pretrained else weights(self.module.gmf.item)
        for start in range(0, len(users), USER_CHUNK):
            chunk = users[start:start + USER_CHUNK]
            query = self.module.retrieval_user.numpy()[chunk] if pretrained else self._gmf_user(chunk)
            for block in top_n(query, item_vectors, n_candidates,
                               allowed_items=allowed_items, exclude=seen[chunk] if seen is not None else None,
                               block_bytes=block_bytes):
                with torch.no_grad():
                    scores = self.module.forward_with_l2(torch.as_tensor(chunk[block.queries]),
                                                         torch.as_tensor(block.items))[0]
                scores[torch.as_tensor(~block.valid)] = float("-inf")
                values, order = torch.topk(scores, min(k, n_candidates), dim=1)
                yield TopNBlock(start=start + block.start, queries=chunk[block.queries],
                                items=np.take_along_axis(block.items, order.numpy(), 1), scores=values.numpy())

    def score_rows(self, data: Dataset, device: torch.device | None = None):
        if self.variant == "gmf":
            return super().score_rows(data, device)
        device = device or pick_device()
        module = self.module.to(device)
        return lambda rows: module.score_grid(torch.as_tensor(rows, device=device), self.shapes["n_items"])


class GMF(NCF):
    name = GMF_NAME
    variant = "gmf"
    dot_product = True


class MLP(NCF):
    name = MLP_NAME
    variant = "mlp"
    finds_similar_videos = False
