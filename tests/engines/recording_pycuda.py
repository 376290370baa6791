"""A recording stand-in for ``pycuda.driver``: it proves which calls we make, never that they run on a GPU.

One emulated device: memory by address, a CUDA context stack per thread, the
primary context retained and released by reference count. pycuda's rules that
bite TensorRT users are enforced as recorded errors (``DRIVER.errors``):
device memory freed on a thread where no context is current (pycuda warns
"could not be cleaned up" and leaks it), a context detached from another
thread than the one that made it (a no-op in pycuda), and work done with no
context current. See ``recording_tensorrt`` for the TensorRT half.

Contexts move as pycuda moves them (``src/cpp/cuda.hpp``): ``push`` first pops the pycuda
context current on the driver's stack (``prepare_context_switch``), so the driver stack holds at
most one pycuda context per thread; ``pop`` removes it and pushes back the pycuda context
below it. ``allocated()`` is the device memory held now (buffers and TensorRT's own activation
memory), ``pinned`` every page-locked allocation's size.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Driver:
    memory: dict[int, bytearray] = field(default_factory=dict)
    stacks: dict[int, list] = field(default_factory=dict)  # the driver's context stack per thread
    pycuda_stacks: dict[int, list] = field(default_factory=dict)  # pycuda's own context_stack per thread
    pinned: list[int] = field(default_factory=list)  # bytes of every pagelocked_empty
    errors: list[str] = field(default_factory=list)
    next_address: int = 4096
    primary_refs: int = 0
    contexts_made: int = 0
    frees: list[int] = field(default_factory=list)  # thread ids that freed memory
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stack(self) -> list:
        return self.stacks.setdefault(threading.get_ident(), [])

    def pycuda_stack(self) -> list:
        return self.pycuda_stacks.setdefault(threading.get_ident(), [])

    def allocated(self) -> int:
        """Bytes of device memory held now."""
        return sum(len(b) for b in list(self.memory.values()))

    def current(self) -> Context | None:
        stack = self.stack()
        return stack[-1] if stack else None

    def require_current(self, what: str) -> None:
        if self.current() is None:
            self.errors.append(f"{what} with no CUDA context current on this thread")


DRIVER = _Driver()


def reset() -> None:
    DRIVER.__init__()  # type: ignore[misc]


class LogicError(RuntimeError):
    pass


class Context:
    def __init__(self, device: Device, primary: bool) -> None:
        self.device, self.primary = device, primary
        self.thread = threading.get_ident()

    def push(self) -> None:
        stack, ours = DRIVER.stack(), DRIVER.pycuda_stack()
        if ours and stack:  # prepare_context_switch: cuCtxPopCurrent of the pycuda context current
            stack.pop()
        ours.append(self)
        stack.append(self)

    @staticmethod
    def pop() -> None:
        stack, ours = DRIVER.stack(), DRIVER.pycuda_stack()
        if not ours or not stack or stack[-1] is not ours[-1]:
            raise LogicError("context::pop: cannot pop non-current context")
        ours.pop()
        stack.pop()
        if ours:  # the pycuda context below is made current again
            stack.append(ours[-1])

    def detach(self) -> None:
        if threading.get_ident() != self.thread:
            DRIVER.errors.append("Context.detach() on another thread than the one that made the context: a no-op")
            return
        if self.primary:
            DRIVER.primary_refs -= 1


class Device:
    def __init__(self, number: int) -> None:
        self.number = number

    @staticmethod
    def count() -> int:
        return 1

    def name(self) -> str:
        return "Recording GPU"

    def compute_capability(self) -> tuple[int, int]:
        return (8, 9)

    def retain_primary_context(self) -> Context:
        DRIVER.primary_refs += 1
        return Context(self, primary=True)

    def make_context(self) -> Context:
        DRIVER.contexts_made += 1
        context = Context(self, primary=False)
        context.push()
        return context


def init() -> None:
    return None


class DeviceAllocation:
    def __init__(self, nbytes: int) -> None:
        DRIVER.require_current("mem_alloc")
        with DRIVER.lock:
            self.address = DRIVER.next_address
            DRIVER.next_address += nbytes + 256
        DRIVER.memory[self.address] = bytearray(nbytes)

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        if self.address not in DRIVER.memory:
            return
        if DRIVER.current() is None:
            DRIVER.errors.append("device_allocation in out-of-thread context could not be cleaned up")
        DRIVER.frees.append(threading.get_ident())
        del DRIVER.memory[self.address]

    def __del__(self) -> None:
        self.free()


def mem_alloc(nbytes: int) -> DeviceAllocation:
    return DeviceAllocation(int(nbytes))


def pagelocked_empty(shape, dtype) -> np.ndarray:  # noqa: ANN001 - as pycuda
    array = np.empty(shape, dtype)
    with DRIVER.lock:
        DRIVER.pinned.append(array.nbytes)
    return array


class Stream:
    def __init__(self) -> None:
        DRIVER.require_current("Stream()")
        self.handle = id(self)

    def synchronize(self) -> None:
        return None


def memcpy_htod_async(dest: DeviceAllocation, src: np.ndarray, stream: Stream | None = None) -> None:
    DRIVER.require_current("memcpy_htod_async")
    data = np.ascontiguousarray(src).tobytes()
    DRIVER.memory[int(dest)][: len(data)] = data


def memcpy_dtoh_async(dest: np.ndarray, src: DeviceAllocation, stream: Stream | None = None) -> None:
    DRIVER.require_current("memcpy_dtoh_async")
    raw = dest.reshape(-1).view(np.uint8)
    raw[:] = np.frombuffer(bytes(DRIVER.memory[int(src)][: raw.size]), np.uint8)


def memcpy_dtoh(dest: np.ndarray, src: DeviceAllocation) -> None:
    memcpy_dtoh_async(dest, src)


def get_driver_version() -> int:
    return 12080  # CUDA 12.8's driver API
