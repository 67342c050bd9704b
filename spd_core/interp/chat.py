"""Talking to an OpenAI-compatible chat-completions server (OpenAI, OpenRouter, vLLM, llama.cpp's
server, Ollama, `transformers serve`) through the `openai` client library, which retries
connection errors, 408, 409, 429 and 5xx answers with exponential backoff."""

from __future__ import annotations

from dataclasses import dataclass

from spd_core.extras import require
from spd_core.interp.prompts import Messages


class EndpointError(RuntimeError):
    """The endpoint cannot be used: unreachable, refusing the key, or not serving the model."""


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: int  # prompt + completion tokens, as the server counts them (0 if it does not say)


def _explain(endpoint: str, model: str, err: Exception) -> EndpointError:
    import openai

    if isinstance(err, openai.AuthenticationError | openai.PermissionDeniedError):
        return EndpointError(
            f"the endpoint {endpoint} refused the request ({err.status_code} "
            f"{'Unauthorized' if err.status_code == 401 else 'Forbidden'}): give the API key "
            "with --api-key-env VAR, the name of the environment variable that holds it"
        )
    if isinstance(err, openai.APIConnectionError):
        return EndpointError(
            f"cannot reach the endpoint {endpoint} ({type(err).__name__}: {err}): is the "
            "server running, and is this its OpenAI-compatible base URL (usually ending in /v1)?"
        )
    if isinstance(err, openai.NotFoundError):
        return EndpointError(
            f"the endpoint {endpoint} answered 404 Not Found: either it is not an "
            "OpenAI-compatible base URL (usually ending in /v1) or it does not serve the model "
            f"{model!r} (see its /models)"
        )
    if isinstance(err, openai.APIStatusError):
        return EndpointError(
            f"the endpoint {endpoint} answered {err.status_code} for model {model!r}: {err}"
        )
    return EndpointError(f"the endpoint {endpoint} failed: {type(err).__name__}: {err}")


class ChatClient:
    """One endpoint and one model; `timeout` seconds per request, `retries` retries with backoff
    on connection errors, 429 and 5xx."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 4,
    ) -> None:
        require("openai", "spd autointerp")
        import openai

        self.endpoint = endpoint
        self.model = model
        # local servers take no key, but the library wants one
        self._client = openai.AsyncOpenAI(
            base_url=endpoint, api_key=api_key or "no-key", timeout=timeout, max_retries=retries
        )

    async def check(self) -> None:
        """EndpointError unless the server lists its models and answers a one-token chat
        request with this model: run before any work."""
        import openai

        quick = self._client.with_options(max_retries=1, timeout=60.0)
        try:
            await quick.models.list()
            await quick.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
            )
        except openai.OpenAIError as err:
            raise _explain(self.endpoint, self.model, err) from None

    async def complete(self, messages: Messages, max_tokens: int, temperature: float) -> Answer:
        """The model's answer to `messages`; EndpointError once the retries are spent."""
        import openai

        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
            )
        except openai.OpenAIError as err:
            raise _explain(self.endpoint, self.model, err) from None
        text = (response.choices[0].message.content or "") if response.choices else ""
        usage = response.usage
        return Answer(text, int(usage.total_tokens) if usage is not None else 0)

    async def close(self) -> None:
        await self._client.close()
