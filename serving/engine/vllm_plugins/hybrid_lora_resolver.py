"""vLLM general plugin: a LoRA resolver that fetches Hybrid adapter versions from the gateway,
for replicas that cannot read the gateway's registry folder (docs/serving.md, "Scale-out").

vLLM 0.32 asks every registered `LoRAResolver` for a model name it does not know, when
`VLLM_ALLOW_RUNTIME_LORA_UPDATING` is on (`OpenAIServingModels.resolve_lora`, reached from every
route that checks `model`: chat, completions, responses, /tokenize). This resolver answers names
of the form `name@version` (the engine names Hybrid serves each version under): it downloads the
version's files from `HYBRID_GATEWAY_URL` with the admin key `HYBRID_GATEWAY_KEY` into
`HYBRID_ADAPTER_CACHE`, sha256-checked (`hybrid_adapter_fetch`), and returns the folder as a
`LoRARequest`; vLLM then loads it and keeps it until it is unloaded. Any other name gets None
(the next resolver, or vLLM's 404). A fetch that fails raises `AdapterFetchError`, a ValueError,
which vLLM answers with 400 and its message.

Loaded in every process of the server (the dist-info beside this file); it registers only when
HYBRID_GATEWAY_URL is set, so a server started by Hybrid's own supervisor is unchanged. Imports
vLLM and the standard library only.
"""

from __future__ import annotations

import asyncio
import logging
import os

from hybrid_adapter_fetch import FetchSettings, fetch_version

logger = logging.getLogger("vllm.hybrid_lora_resolver")
"""Under `vllm`, so the server's own log configuration shows it."""

RESOLVER_NAME = "Hybrid gateway"


def make_resolver(settings: FetchSettings):
    """A vLLM `LoRAResolver` that fetches from the gateway of `settings`."""
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver

    class HybridGatewayResolver(LoRAResolver):
        async def resolve_lora(self, base_model_name: str, lora_name: str) -> LoRARequest | None:
            folder = await asyncio.to_thread(fetch_version, settings, lora_name)
            if folder is None:
                return None
            logger.info("LoRA adapter %s from %s is in %s", lora_name, settings.gateway_url, folder)
            # vLLM sets the real id (its own counter) before it loads the request.
            return LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=str(folder))

    return HybridGatewayResolver()


def register() -> None:
    """Register the resolver when HYBRID_GATEWAY_URL is set (a bad value stops the server's
    start with the reason)."""
    settings = FetchSettings.from_env(os.environ)
    if settings is None:
        return
    from vllm.lora.resolver import LoRAResolverRegistry

    if RESOLVER_NAME not in LoRAResolverRegistry.get_supported_resolvers():
        LoRAResolverRegistry.register_resolver(RESOLVER_NAME, make_resolver(settings))
