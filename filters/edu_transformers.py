"""The original kind of edu scorer: a local Hugging Face sequence-classification model.

Any model directory that `AutoModelForSequenceClassification` loads works (a
FineWeb-Edu-style BERT with a one-output regression head, or a 6-way classifier,
scored as the expected label). Only local folders (or s3:// folders, copied
once); nothing is downloaded from a hub. Runs on GPU when torch sees one.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from shammie.pipeline.errors import InputError


class TransformersEduScorer:
    backend = "transformers"

    def __init__(self, model: str, *, batch_size: int = 32, max_length: int = 512, device: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from shammie.filters.edu_fasttext import local_copy

        path = local_copy(model)
        if not os.path.isdir(path):
            raise InputError(f"{model}: the transformers backend needs a model folder (config.json, weights, tokenizer)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise InputError(f"{model}: cannot load as a sequence-classification model: {e}") from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        if self.device.type == "cuda":
            self.model.half()
        self.batch_size = batch_size
        # Tokenizers saved without a limit report model_max_length ~1e30; the position table is the real cap.
        limits = [max_length, getattr(self.tokenizer, "model_max_length", None),
                  getattr(self.model.config, "max_position_embeddings", None)]
        self.max_length = int(min(x for x in limits if x))
        self.model_url = model
        num_labels = self.model.config.num_labels
        if num_labels == 1:
            self.values = None  # regression head: the logit is the score
        else:
            labels = [self.model.config.id2label[i] for i in range(num_labels)]
            try:
                self.values = np.array([float(str(lab).removeprefix("LABEL_")) for lab in labels])
            except ValueError:
                raise InputError(f"{model}: {num_labels} labels {labels} are not numeric scores") from None

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        texts = [t or "" for t in texts]
        out = np.zeros(len(texts), dtype=np.float64)
        # Sort by length so each batch pads to a similar size (big win on CPU).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding="longest", truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                logits = self.model(**enc).logits.float()
                if self.values is None:
                    scores = logits[:, 0]
                else:
                    probs = torch.softmax(logits, dim=-1)
                    scores = probs @ torch.as_tensor(self.values, dtype=probs.dtype, device=probs.device)
                out[idx] = scores.cpu().numpy()
        return out
