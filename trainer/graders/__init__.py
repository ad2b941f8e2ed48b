"""OpenAI's graders as a library: the gateway's /v1/fine_tuning/alpha/graders/{run,validate} and,
later, reinforcement fine-tuning's rewards use the same code. It never imports service/.

    grader = validate({"type": "string_check", ...}, context)   # GraderError(message, param)
    result = await grade(grader, Sample.from_text(output), item, context)
    result.reward, result.errors, result.sub_rewards, result.token_usage_per_model
"""

from trainer.graders.context import ChatReply, ChatRequest, GradingContext, ModelCaller, ModelCallError
from trainer.graders.embeddings import EmbeddingsEndpoint, EndpointEmbedder
from trainer.graders.grading import grade, parse_grader, validate
from trainer.graders.models import Grader
from trainer.graders.results import ErrorFlags, GraderError, GradeResult, GradingFailure, TokenUsage
from trainer.graders.sandbox import Sandbox, SandboxLimits
from trainer.graders.templates import Sample

__all__ = [
    "ChatReply",
    "ChatRequest",
    "EmbeddingsEndpoint",
    "EndpointEmbedder",
    "ErrorFlags",
    "GradeResult",
    "Grader",
    "GraderError",
    "GradingContext",
    "GradingFailure",
    "ModelCallError",
    "ModelCaller",
    "Sample",
    "Sandbox",
    "SandboxLimits",
    "TokenUsage",
    "grade",
    "parse_grader",
    "validate",
]
