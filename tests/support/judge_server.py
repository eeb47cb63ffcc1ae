"""A real OpenAI-compatible judge endpoint for tests: `transformers serve` (transformers' own FastAPI
server, extra `serving`) in a process the test owns, serving a tiny hand-wired Llama, and a
fault-injecting HTTP proxy (a thread) in front of it. Both bind 127.0.0.1 only.

The judge model is built locally in a second (no download): a one-layer Llama whose weights are set by
hand so that, greedy, it answers "Yes" when the text it is shown contains "2024" and "No" otherwise,
then stops. Its one attention head looks from the last prompt token (`<|assistant|>`) for a token
holding "2024"; the head's query and key use only the slowest rotary pair, so position does not
matter. The verdicts therefore depend on each response, which is what lets a test check that
concurrent requests come back in order and that a retried request gives the same verdict.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MARKER = "2024"
YES, NO = "Yes", "No"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the hand-wired judge model --------------------------------------------------------------------


def build_judge_model(folder: Path) -> Path:
    """A tiny Llama that answers Yes iff its prompt contains "2024" (see the module doc). Built once."""
    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from leaksweep.model.tiny import build_tiny_model
    from leaksweep.train_config import TinyModelConfig

    # The tokenizer: leaksweep's byte-level BPE trained on text where "2024", "Yes" and "No" are frequent
    # enough to become whole tokens (the model is rebuilt below).
    corpus = [f"{YES} {NO} {MARKER} in {MARKER}, {MARKER}. year {MARKER}? the cat sat on a mat and said hello"] * 50
    corpus += [f"{MARKER}", f"{MARKER} is here", f"({MARKER})"] * 50
    words = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?'\"-()\n"
    corpus += [" ".join(words[i:] + words[:i] for i in range(0, len(words), 7))] * 5
    tok_dir = build_tiny_model(folder.parent / (folder.name + "-tok"), corpus, TinyModelConfig(vocab_size=400))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    tok.model_max_length = 8192
    vocab = tok.get_vocab()
    yes_ids, no_ids = tok.encode(YES, add_special_tokens=False), tok.encode(NO, add_special_tokens=False)
    assert len(yes_ids) == 1 and len(no_ids) == 1, (yes_ids, no_ids)
    markers = [i for t, i in vocab.items() if MARKER in tok.convert_tokens_to_string([t])]
    # "2024" split into pieces would hide it from the head: every piece that could start it is refused
    assert markers and all(len(tok.encode(s, add_special_tokens=False)) == 1 for s in (MARKER, " " + MARKER))

    hidden = 64
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 1e10},
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    G, Q, M, Y, N, A = 0, 1, 2, 3, 4, 5  # residual directions: generic, query, marker, yes, no, attention out
    U = (hidden // 2 - 1, hidden - 1)  # the slowest rotary pair: query and key live here, unrotated
    assistant = vocab["<|assistant|>"]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (
            model.model.norm,
            model.model.layers[0].input_layernorm,
            model.model.layers[0].post_attention_layernorm,
        ):
            norm.weight.fill_(1.0)
        emb = model.model.embed_tokens.weight
        emb[:, G] = 1.0
        for i in markers:
            emb[i] = 0.0
            emb[i, M] = 1.0
        emb[assistant] = 0.0
        emb[assistant, Q] = 1.0
        emb[yes_ids[0]] = 0.0
        emb[yes_ids[0], Y] = 1.0
        emb[no_ids[0]] = 0.0
        emb[no_ids[0], N] = 1.0
        attn = model.model.layers[0].self_attn
        attn.q_proj.weight[U[0], Q] = 2.0  # inputs are RMS-normalised to 8 per unit direction
        attn.k_proj.weight[U[0], M] = 2.0  # score = 8*2 * 8*2 / sqrt(64) = 32 for a marker, 0 otherwise
        attn.v_proj.weight[A, M] = 1.0
        attn.o_proj.weight[A, A] = 1.0
        head = model.lm_head.weight
        head[no_ids[0], Q] = 1.0  # after <|assistant|>: No, unless the head found a marker (A up to 8)
        head[yes_ids[0], A] = 2.0
        head[tok.eos_token_id, Y] = 20.0  # after Yes or No: stop
        head[tok.eos_token_id, N] = 20.0
    model.generation_config = GenerationConfig(
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, do_sample=False
    )
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(folder)
    return folder


# --- the server process ----------------------------------------------------------------------------


@dataclass
class JudgeServer:
    """`transformers serve MODEL` on 127.0.0.1:port, a child process of the test (stopped by pid)."""

    model_dir: Path
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    started_s: float = 0.0  # seconds from spawn to the first answered /v1/models

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        return str(self.model_dir)  # the served name: the server refuses any other

    def start(self, timeout_s: float = 180.0) -> JudgeServer:
        cli = Path(sys.executable).with_name("transformers")
        command = [str(cli), "serve", str(self.model_dir), "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--device", "cpu", "--dtype", "float32", "--log-level", "error"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        log = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                tail = Path(self.log_path).read_text()[-3000:] if self.log_path else ""
                raise RuntimeError(f"transformers serve exited with {self.process.returncode}:\n{tail}")
            try:
                status, _ = request("GET", f"{self.base_url}/models", timeout=2)
                if status == 200:
                    self.started_s = time.monotonic() - started
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"transformers serve did not answer on {self.base_url} within {timeout_s} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and nothing else
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> JudgeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def request(method: str, url: str, body: bytes | None = None, timeout: float = 10, headers=None):
    """(status, body bytes) of one plain HTTP request to 127.0.0.1."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1", url
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- the fault-injecting proxy ---------------------------------------------------------------------


@dataclass
class Faults:
    """What the proxy does to chat completion requests, counted from its start (or the last reset)."""

    status_first: int = 0  # answer the first K requests with `status` instead of forwarding them
    status: int = 429
    delay_s: float = 0.0  # hold each request this long before forwarding (a slow server)
    delay_first: int | None = None  # only the first K requests are slow (None: all)
    content: str | None = None  # replace the model's answer with this text (malformed output)
    content_every: int = 1  # ... in every Nth response only


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of `upstream` that injects `faults` into POST
    /v1/chat/completions and passes everything else through. Counts requests, the status codes it
    answered, the Authorization headers it saw, and the most requests in flight at once."""

    def __init__(self, upstream: str, faults: Faults | None = None):
        from urllib.parse import urlsplit

        up = urlsplit(upstream)
        assert up.hostname == "127.0.0.1", upstream
        self.upstream = (up.hostname, up.port)
        self.lock = threading.Lock()
        self.reset(faults)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                proxy._forward(self, None)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy._forward(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reset(self, faults: Faults | None = None) -> None:
        """Zero the counters and inject `faults` from now on (none: pass everything through)."""
        with self.lock:
            self.faults = faults or Faults()
            self.n_chat = 0
            self.statuses: list[int] = []
            self.auth_headers: set[str] = set()
            self.in_flight = self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes | None) -> None:
        chat = handler.command == "POST" and handler.path.endswith("/chat/completions")
        with self.lock:
            n = self.n_chat if chat else -1
            self.n_chat += chat
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.auth_headers.add(handler.headers.get("Authorization", ""))
            f = self.faults
        try:
            if chat and n < f.status_first:
                return self._reply(handler, f.status, json.dumps({"error": {"message": "injected"}}).encode())
            if chat and f.delay_s and (f.delay_first is None or n < f.delay_first):
                time.sleep(f.delay_s)
            headers = {"Content-Type": "application/json"} if body is not None else {}
            try:
                status, data = request(
                    handler.command, f"http://127.0.0.1:{self.upstream[1]}{handler.path}", body, 120, headers
                )
            except OSError as exc:
                return self._reply(handler, 502, json.dumps({"error": {"message": str(exc)}}).encode())
            if chat and status == 200 and f.content is not None and n % f.content_every == 0:
                payload = json.loads(data)
                payload["choices"][0]["message"]["content"] = f.content
                data = json.dumps(payload).encode()
            self._reply(handler, status, data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer
        finally:
            with self.lock:
                self.in_flight -= 1

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
        with self.lock:
            self.statuses.append(status)
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
