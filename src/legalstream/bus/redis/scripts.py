"""The Lua scripts of the Redis bus, and the pipeline their calls share.

A script does in one round trip what would otherwise be several commands,
each packed and parsed by redis-py in Python: a run's batch of events, its
record with the record's two indexes, the end of its stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from legalstream.bus.redis.connection import BackgroundTasks

#: ``XADD`` of a batch: KEYS[1] the stream; ARGV maxlen, ttl (0: leave it),
#: then (entry id, encoded event) pairs. A refused id (the stream's end
#: marker is newer; a seq reused) raises and stops the batch there.
XADD_MANY = """
local maxlen = ARGV[1]
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, ARGV[i], 'e', ARGV[i + 1])
end
if ARGV[2] ~= '0' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return (#ARGV - 2) / 2
"""

#: Lua: save a run record, its two indexes (all runs, the run's case) and
#: its place in the index of running runs (bus/redis/leases.py).
#: KEYS[k] the record, KEYS[k+1..k+2] the indexes, KEYS[k+3] the running
#: index; ARGV[a..a+6] record JSON, ttl, run id, started_at, runs kept per
#: index, cutoff time, "1" while the run is running.
_SAVE_RECORD = """
local function save_record(k, a)
  redis.call('SET', KEYS[k], ARGV[a], 'EX', ARGV[a + 1])
  for i = k + 1, k + 2 do
    redis.call('ZADD', KEYS[i], ARGV[a + 3], ARGV[a + 2])
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(tonumber(ARGV[a + 4]) + 1))
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[a + 5])
    redis.call('EXPIRE', KEYS[i], ARGV[a + 1])
  end
  if ARGV[a + 6] == '1' then
    redis.call('ZADD', KEYS[k + 3], ARGV[a + 3], ARGV[a + 2])
    redis.call('EXPIRE', KEYS[k + 3], ARGV[a + 1])
  else
    redis.call('ZREM', KEYS[k + 3], ARGV[a + 2])
  end
end
"""

#: A run record and its indexes in one command. KEYS and ARGV as ``_SAVE_RECORD``'s.
SAVE_RUN = (
    _SAVE_RECORD
    + """
save_record(1, 1)
return 1
"""
)

#: A run's batch stored with its record. KEYS the stream, then the record
#: keys; ARGV maxlen, then the record args (the ttl among them also bounds
#: the stream), then (entry id, encoded event) pairs.
_STORE_BATCH = """
local maxlen = ARGV[1]
for i = 9, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, ARGV[i], 'e', ARGV[i + 1])
end
"""

#: A run's opening frames and its first record, in one command.
OPEN_RUN = (
    _SAVE_RECORD
    + _STORE_BATCH
    + """
redis.call('EXPIRE', KEYS[1], ARGV[3])
save_record(2, 2)
return 1
"""
)

#: A run's last batch, its end marker and its final record, in one command.
FINISH_RUN = (
    _SAVE_RECORD
    + _STORE_BATCH
    + """
redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'end', '1')
redis.call('EXPIRE', KEYS[1], ARGV[3])
save_record(2, 2)
return 1
"""
)


#: A run whose worker is gone gets its final event, once, whoever races to do it.
#: KEYS the stream, the record, the running index, the owner's heartbeat key;
#: ARGV the owner, the final event's JSON and the final record's JSON (both
#: with ``"seq":-1`` / ``"event_count":-1`` for the seq this script finds),
#: ttl, maxlen, run id. Returns the final event's seq, or 0 when there was
#: nothing to do (the owner is alive, or the run already ended).
FINALIZE_ORPHAN = """
if redis.call('EXISTS', KEYS[4]) == 1 then
  return 0
end
local raw = redis.call('GET', KEYS[2])
if not raw then
  redis.call('ZREM', KEYS[3], ARGV[6])
  return 0
end
local record = cjson.decode(raw)
if record['status'] ~= 'running' or record['worker'] ~= ARGV[1] then
  redis.call('ZREM', KEYS[3], ARGV[6])
  return 0
end
local last = 0
local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #tail > 0 then
  local fields = tail[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'end' then
      redis.call('ZREM', KEYS[3], ARGV[6])
      return 0
    end
  end
  last = tonumber(string.match(tail[1][1], '^(%d+)'))
end
local seq = last + 1
local event = string.gsub(ARGV[2], '"seq":%-1', '"seq":' .. seq, 1)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], seq .. '-0', 'e', event)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', 'end', '1')
redis.call('EXPIRE', KEYS[1], ARGV[4])
local final = string.gsub(ARGV[3], '"seq":%-1', '"seq":' .. seq)
final = string.gsub(final, '"event_count":%-1', '"event_count":' .. seq, 1)
redis.call('SET', KEYS[2], final, 'EX', ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[6])
return seq
"""


class Scripts:
    """The registered scripts, called through one :class:`ScriptBatch`."""

    def __init__(self, commands: Callable[[], aioredis.Redis]) -> None:
        self._commands = commands
        #: The tasks that send batches (cancelled by the transport's close).
        self.tasks = BackgroundTasks()
        self.batch = ScriptBatch(commands, self.tasks)
        self.xadd_many: Any = None
        self.save_run: Any = None
        self.open_run: Any = None
        self.finish_run: Any = None
        self.finalize_orphan: Any = None

    def register(self) -> None:
        r = self._commands()
        self.xadd_many = r.register_script(XADD_MANY)
        self.save_run = r.register_script(SAVE_RUN)
        self.open_run = r.register_script(OPEN_RUN)
        self.finish_run = r.register_script(FINISH_RUN)
        self.finalize_orphan = r.register_script(FINALIZE_ORPHAN)

    def call(self, script: Any, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        if script is None:
            raise RuntimeError("the Redis bus was not started")
        return self.batch.call(script, keys, args)


class ScriptBatch:
    """Script calls made in one turn of the event loop go to Redis as one pipeline.

    Every run publishes a few script calls (record, batches, finish); with
    many runs at once, redis-py's per-command work (pool checkout, retry
    wrapper, timeout, a write and a read) was a fifth of a worker's time.
    Calls queue here and a callback at the end of the loop's turn sends them
    together; each caller still gets its own result or error.
    """

    def __init__(self, commands: Callable[[], aioredis.Redis], tasks: BackgroundTasks) -> None:
        self._commands = commands
        self._tasks = tasks
        self._pending: list[tuple[Any, list[Any], list[Any], asyncio.Future[Any]]] = []

    def call(self, script: Any, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((script, keys, args, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._tasks.spawn(self._send(batch), "scripts")

    async def _send(
        self, batch: list[tuple[Any, list[Any], list[Any], asyncio.Future[Any]]]
    ) -> None:
        try:
            pipe = self._commands().pipeline(transaction=False)
            for script, keys, args, _ in batch:
                await script(keys=keys, args=args, client=pipe)  # queues; loads if needed
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else RedisError(str(exc))
                    )
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
