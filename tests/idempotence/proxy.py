"""A small TCP proxy in front of one broker that loses responses on purpose.

Clients reach the broker through it because the broker advertises the proxy's address
(`advertised_kafka_addr`). The proxy reads the Kafka frames going both ways. While cutting is on,
after it forwarded a Produce request it may decide to cut that connection:

- **on the response** (`cut_on_response`, the response to every `cut_every`-th Produce request, so
  a load of a known number of requests meets a known number of cuts): it waits for the broker's response to that very request
  (same correlation id), drops it and closes both sides. The broker has certainly handled the
  request; the client never learns the outcome and must retry it on a new connection.
- **the next one** (`cut_next_produce_response`): one response on purpose, e.g. right before the
  test kills the broker, so the retry meets a restarted broker.
- **after a delay** (`cut_after_delay`): it closes both sides a random 0..`max_delay_s` after
  forwarding, whatever is in flight (the response may or may not have come back).

Either way the requests themselves were forwarded whole: a cut never truncates a request, so what
the broker sees is exactly what a client sent; only responses are lost. Counters say what happened
so a test can check that its load actually met cuts.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time


API_PRODUCE = 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pipe:
    """One client connection and its broker connection."""

    def __init__(self, proxy: "CuttingProxy", client: socket.socket, upstream: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.lock = threading.Lock()
        self.closed = False
        self.cut_corr: set[int] = set()  # correlation ids whose response is the cut point
        self.pending_produce: dict[int, float] = {}  # Produce corr -> time forwarded

    def close(self, reason: str | None = None) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        if reason:
            self.proxy.count(reason)
            lost = len(self.pending_produce)
            if lost:
                self.proxy.count("produce_responses_lost", lost)
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self.proxy.forget(self)

    @staticmethod
    def _frames(buf: bytearray):
        """Pops whole frames (size prefix included) off the front of buf."""
        while len(buf) >= 4:
            n = struct.unpack(">i", buf[:4])[0]
            if n < 0 or len(buf) < 4 + n:
                return
            frame = bytes(buf[:4 + n])
            del buf[:4 + n]
            yield frame

    def client_to_broker(self) -> None:
        buf = bytearray()
        try:
            while True:
                chunk = self.client.recv(65536)
                if not chunk:
                    break
                buf += chunk
                for frame in self._frames(buf):
                    api_key = struct.unpack(">h", frame[4:6])[0] if len(frame) >= 12 else -1
                    corr = struct.unpack(">i", frame[8:12])[0] if len(frame) >= 12 else -1
                    after = None
                    if api_key == API_PRODUCE:
                        self.pending_produce[corr] = time.monotonic()
                        self.proxy.count("produce_requests")
                        # Decided before forwarding, so the response cannot slip through first.
                        after = self.proxy.decide_cut(self, corr)
                    self.upstream.sendall(frame)
                    self.proxy.count("requests")
                    if after is not None:
                        after()
        except OSError:
            pass
        self.close("client_closed" if not self.closed else None)

    def broker_to_client(self) -> None:
        buf = bytearray()
        try:
            while True:
                chunk = self.upstream.recv(65536)
                if not chunk:
                    break
                buf += chunk
                for frame in self._frames(buf):
                    corr = struct.unpack(">i", frame[4:8])[0] if len(frame) >= 8 else -1
                    if corr in self.cut_corr:
                        self.close("cuts_on_response")
                        self.proxy.response_cut.set()
                        return
                    self.client.sendall(frame)
                    self.pending_produce.pop(corr, None)
        except OSError:
            pass
        self.close("broker_closed" if not self.closed else None)


class CuttingProxy:
    def __init__(self, upstream_port: int, seed: int = 0):
        self.port = free_port()
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.cutting = False
        self.p_on_response = 0.0
        self.cut_every = 0  # cut the response to every n-th Produce request (0: never)
        self.produce_seen = 0
        self.p_after_delay = 0.0
        self.max_delay_s = 0.02
        self.counters: dict[str, int] = {}
        self.one_shot = False
        self.response_cut = threading.Event()  # set whenever a response was dropped
        self.lock = threading.Lock()
        self.pipes: set[Pipe] = set()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(128)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counters[what] = self.counters.get(what, 0) + n

    def forget(self, pipe: Pipe) -> None:
        with self.lock:
            self.pipes.discard(pipe)

    def start_cutting(self, p_on_response: float = 0.0, p_after_delay: float = 0.01,
                      max_delay_s: float = 0.02, cut_every: int = 0) -> None:
        """Cut responses to every `cut_every`-th Produce request (deterministic) and, at random,
        with probability `p_on_response`; cut connections `p_after_delay` of the time after a delay."""
        self.p_on_response, self.p_after_delay, self.max_delay_s = p_on_response, p_after_delay, max_delay_s
        self.cut_every, self.produce_seen = cut_every, 0
        self.cutting = True

    def stop_cutting(self) -> None:
        self.cutting = False

    def cut_next_produce_response(self) -> threading.Event:
        """Drop the response to the next Produce request (only that one), then stop cutting.
        Returns an event set once it was dropped."""
        self.response_cut.clear()
        self.p_on_response, self.p_after_delay, self.cut_every = 1.0, 0.0, 0
        self.one_shot = True
        self.cutting = True
        return self.response_cut

    def decide_cut(self, pipe: Pipe, corr: int):
        """Called before a Produce request is forwarded; returns what to run after forwarding."""
        with self.lock:
            if not self.cutting:
                return None
            r = self.rng.random()
            delay = self.rng.uniform(0, self.max_delay_s)
            self.produce_seen += 1
            nth = self.cut_every > 0 and self.produce_seen % self.cut_every == 0
            if nth or r < self.p_on_response:
                pipe.cut_corr.add(corr)
                if self.one_shot:
                    self.one_shot = False
                    self.cutting = False
                return None
        if r < self.p_on_response + self.p_after_delay:
            def later():
                def cut():
                    time.sleep(delay)
                    pipe.close("cuts_after_delay")
                threading.Thread(target=cut, daemon=True).start()
            return later
        return None

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                self.count("upstream_refused")
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pipe = Pipe(self, client, upstream)
            with self.lock:
                self.pipes.add(pipe)
                self.counters["connections"] = self.counters.get("connections", 0) + 1
            threading.Thread(target=pipe.client_to_broker, daemon=True, name="proxy-c2b").start()
            threading.Thread(target=pipe.broker_to_client, daemon=True, name="proxy-b2c").start()

    def close(self) -> None:
        self.stopped = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            pipes = list(self.pipes)
        for p in pipes:
            p.close()
