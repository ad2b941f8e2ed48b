"""What a reinforcement job's trainer needs to run its model graders (score_model, label_model):
this gateway's address as trainers reach it and a grader token (service/grader_tokens.py), put in
the trainer's spec (trainer/spec.py's ModelGraderAccess; the spec file is private to the server's
user: service/jobs/executor.py) each time a trainer starts; and, for cosine graders, the
embeddings endpoint. Jobs with neither get nothing.
"""

from __future__ import annotations

from service.config import Settings
from service.grader_tokens import GraderTokens
from service.graders import embeddings_endpoint
from service.jobs.reinforcement import uses_embeddings, uses_model_graders
from service.store import Database
from trainer.graders import EmbeddingsEndpoint
from trainer.spec import ModelGraderAccess, TrainingSpec


class GraderAccess:
    def __init__(
        self,
        tokens: GraderTokens,
        gateway_url: str,
        max_concurrent: int,
        embeddings: EmbeddingsEndpoint | None = None,
    ) -> None:
        self.tokens = tokens
        self.gateway_url = gateway_url
        self.max_concurrent = max_concurrent
        self.embeddings = embeddings  # for cosine graders (OPENTUNE_EMBEDDINGS_*)

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> GraderAccess:
        # The trainer's calls count against the organization's chat limit: never ask for more.
        most = min(settings.model_grader_max_concurrent, settings.chat_max_concurrent_per_org)
        url = settings.resolved_trainer_gateway_url
        return cls(GraderTokens(db), url, most, embeddings_endpoint(settings))

    def for_trainer(self, spec: TrainingSpec) -> TrainingSpec:
        """The spec, with access to the models when its grader has model graders; a new token each
        time (the job's earlier ones stop working). Blocking (the database)."""
        settings = spec.reinforcement
        if settings is None:
            return spec
        if self.embeddings is not None and uses_embeddings(settings.grader):
            settings = settings.model_copy(update={"embeddings": self.embeddings})
        if not uses_model_graders(settings.grader):
            return spec.model_copy(update={"reinforcement": settings})
        access = ModelGraderAccess(
            gateway_url=self.gateway_url,
            token=self.tokens.mint(spec.job_id),
            max_concurrent=self.max_concurrent,
        )
        with_access = settings.model_copy(update={"model_graders": access})
        return spec.model_copy(update={"reinforcement": with_access})
