"""Training data: read (Alpaca, ShareGPT, OpenAI chat, raw text), check, mix in replay.

Python API::

    from finetune.data import check_dataset, load_dataset, load_tokenizer

    examples = load_dataset(["data/style.jsonl", "data/letters/"])  # format="auto"
    report = check_dataset(examples, load_tokenizer("models/base"), max_length=1024)
    print(report.to_text())
"""

from finetune.data.check import CheckConfig, DataReport, Finding, LengthSpread, check_dataset
from finetune.data.formats import available_formats, register_format
from finetune.data.load import load_dataset
from finetune.data.replay import mix_replay
from finetune.data.schema import Example, Message
from finetune.data.tokenizer import load_tokenizer

__all__ = [
    "CheckConfig",
    "DataReport",
    "Example",
    "Finding",
    "LengthSpread",
    "Message",
    "available_formats",
    "check_dataset",
    "load_dataset",
    "load_tokenizer",
    "mix_replay",
    "register_format",
]
