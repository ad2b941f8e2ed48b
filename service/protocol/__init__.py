"""Wire models: pydantic mirrors of OpenAI's schemas, one module per resource. No logic beyond validation."""
