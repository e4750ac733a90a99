"""Servers over real HTTP on 127.0.0.1 for the serve tests: uvicorn in a thread on a free
port (always shut down), and a tiny word-level tokenizer with a chat template."""
import contextlib
import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@contextlib.contextmanager
def running_server(argv):
    """Start `nanosim serve ARGV` in a thread; yields (base_url, ServerState)."""
    from nanosim.cli import build_parser
    from nanosim.serve.server import listen_socket, make_server

    a = build_parser().parse_args(["serve", "--port", "0", "--log-level", "warning", *argv])
    server, state = make_server(a)
    sock = listen_socket("127.0.0.1")
    sock.bind(("127.0.0.1", 0))
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert th.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", state
    finally:
        server.should_exit = True
        th.join(timeout=20)
        sock.close()
        assert not th.is_alive(), "server thread did not stop"


@pytest.fixture(scope="session")
def chat_tokenizer_dir(tmp_path_factory):
    """A word-level tokenizer (256 words) with a chat template, saved like a checkpoint's."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    words = ["<unk>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>"] + [f"w{i}" for i in range(251)]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)},
                                                           unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>",
        chat_template="{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                      "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    path = tmp_path_factory.mktemp("chat-tok")
    fast.save_pretrained(path)
    return path


@contextlib.contextmanager
def server_process(argv, env_path, new_session: bool = False):
    """`python -m nanosim serve --port 0 ARGV` as a child process; yields (base_url, Popen).
    Stopped with SIGTERM on leaving (killed if it does not exit in 20 s)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(env_path)}
    proc = subprocess.Popen([sys.executable, "-m", "nanosim", "serve", "--port", "0",
                             "--log-level", "warning", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=new_session)  # a group of its own: Ctrl-C tests
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "listening on" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "server exited before listening"
            assert time.monotonic() < deadline, "server did not start"
        url = line.split("listening on ")[1].strip()
        deadline = time.monotonic() + 20
        while True:  # uvicorn starts serving just after the line is printed
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server never became healthy"
            time.sleep(0.02)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny random Qwen3 checkpoint (fp32 on CPU) for real-mode servers."""
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from tests.tiny_qwen3 import save_tiny_qwen3

    path = tmp_path_factory.mktemp("tiny-qwen3")
    save_tiny_qwen3(path)
    return path
