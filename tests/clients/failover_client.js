'use strict'
/*
 * A long-running kafkajs client that runs across a kflip failover.
 *
 * usage: node failover_client.js --role {producer,manual,auto} --bootstrap HOST:PORT
 *        --topic T --client-id ID [--group G] --out FILE --stop FILE [--rate N]
 *        [--no-idempotent]
 *
 * Runs until the --stop file exists, then finishes cleanly and exits 0. It
 * never exits on a transient error: errors are written to --out and it goes
 * on, so one process lives through the whole failover.
 *
 * --out gets one line per event, written synchronously, so a test can poll it
 * (the same lines as failover_client.py):
 *   producer  ack <value> <partition> <offset>    a delivery succeeded
 *             err <value> <message>               a delivery failed
 *             done sent=<n> acked=<n> failed=<n>  after the last send settled (<= 60 s after stop)
 *   manual    got <value> <partition> <offset>    a record was consumed
 *             commit ok | commit err <message>    commitOffsets after each batch
 *             done got=<n>                        after disconnect()
 *   auto      got ... and done ... as manual; offsets auto-committed every second
 *   consumers cerr <message>                      a consumer error/crash (not fatal)
 *   all       log <level> <message>               kafkajs log lines (warn and up)
 *
 * Producer values (and keys) are "<client-id>-<seq>", seq from 0 up, at about
 * --rate records per second, sent in small batches (one send() in flight).
 *
 * The producer is idempotent unless --no-idempotent is given (then still
 * acks=-1, one request in flight). Only through kflip can it be idempotent
 * on tansu 0.6.0: kafkajs sends InitProducerId v1, which tansu's sqlite
 * engine does not implement (a `todo!()` panic that stops the broker from
 * serving) and its memory engine answers with UNKNOWN_SERVER_ERROR; kflip
 * answers idempotent InitProducerId itself. Pass --no-idempotent to talk to
 * tansu directly.
 */
const fs = require('fs')
const { Kafka, logLevel, Partitioners } = require('kafkajs')

const USAGE =
  'usage: failover_client.js --role {producer,manual,auto} --bootstrap HOST:PORT ' +
  '--topic T --client-id ID [--group G] --out FILE --stop FILE [--rate N] [--no-idempotent]'

function parseArgs (argv) {
  const args = { rate: 200, idempotent: true }
  const names = { '--role': 'role', '--bootstrap': 'bootstrap', '--topic': 'topic',
    '--client-id': 'clientId', '--group': 'group', '--out': 'out', '--stop': 'stop', '--rate': 'rate' }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--no-idempotent') {
      args.idempotent = false
      continue
    }
    let [flag, value] = argv[i].split(/=(.*)/s)
    if (!(flag in names)) usage(`unknown argument ${argv[i]}`)
    if (value === undefined) {
      if (i + 1 >= argv.length) usage(`${flag} needs a value`)
      value = argv[++i]
    }
    args[names[flag]] = value
  }
  for (const k of ['role', 'bootstrap', 'topic', 'clientId', 'out', 'stop']) {
    if (!args[k]) usage(`missing --${k === 'clientId' ? 'client-id' : k}`)
  }
  if (!['producer', 'manual', 'auto'].includes(args.role)) usage(`bad --role ${args.role}`)
  if (args.role !== 'producer' && !args.group) usage(`--group is required for --role ${args.role}`)
  args.rate = Number(args.rate)
  if (!(args.rate > 0)) usage('--rate must be positive')
  return args
}

function usage (msg) {
  process.stderr.write(`${msg}\n${USAGE}\n`)
  process.exit(2)
}

const ARGS = parseArgs(process.argv.slice(2))
// tansu builds large fetch responses very slowly: fetch in small steps.
const MAX_BYTES_PER_PARTITION = 65536
const MAX_BATCH = 100 // records per producer send()

const outFd = fs.openSync(ARGS.out, 'a')
/** Appends one event line (newlines inside it are flattened), synchronously. */
function emit (line) {
  fs.writeSync(outFd, String(line).replace(/\s*\n\s*/g, ' ') + '\n')
}
const oneLine = e => (e && (e.message || String(e)) || 'unknown error').replace(/\s+/g, ' ')
const errText = e => `${(e && e.name) || 'Error'} ${oneLine(e)}`
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// The stop file, polled every 100 ms.
let stopped = false
const stopWaiters = []
const stopTimer = setInterval(() => {
  if (!stopped && fs.existsSync(ARGS.stop)) {
    stopped = true
    clearInterval(stopTimer)
    stopWaiters.splice(0).forEach(resolve => resolve())
  }
}, 100)
const whenStopped = () => stopped ? Promise.resolve() : new Promise(resolve => stopWaiters.push(resolve))
// After stop, a send still in flight gets this long to settle (like a flush).
const STOP_GRACE_MS = 60000
let graceOver
const afterGrace = () => graceOver || (graceOver = whenStopped().then(() => sleep(STOP_GRACE_MS)))

// Never die on a stray error: record it and go on.
process.on('unhandledRejection', e => emit(`log error unhandled rejection: ${errText(e)}`))
process.on('uncaughtException', e => emit(`log error uncaught exception: ${errText(e)}`))

const logCreator = () => ({ namespace, label, log }) => {
  const extra = log.error && log.error !== log.message ? ` (${log.error})` : ''
  emit(`log ${String(label).toLowerCase()} ${namespace}: ${log.message}${extra}`)
}

const RETRY = { retries: 1000000, initialRetryTime: 100, maxRetryTime: 1000 }
const kafka = new Kafka({
  clientId: ARGS.clientId,
  brokers: [ARGS.bootstrap],
  logLevel: logLevel.WARN,
  logCreator,
  requestTimeout: 30000,
  retry: RETRY
})

/**
 * Runs `f` until it succeeds or stop; false if stopped first. kafkajs retries
 * connect() itself (for ever, with RETRY), so stop also ends a pending attempt.
 */
async function untilOk (what, f) {
  while (!stopped) {
    const attempt = f().then(() => 'ok')
    attempt.catch(() => {}) // may reject after a stop: nobody is waiting then
    try {
      if (await Promise.race([attempt, whenStopped().then(() => 'stopped')]) === 'ok') return true
    } catch (e) {
      emit(`log error ${what}: ${errText(e)}`)
      await sleep(1000)
    }
  }
  return false
}

/** Resolves with `p`, or with undefined after `ms` (logging what timed out). */
function withTimeout (what, p, ms) {
  let timer
  return Promise.race([
    p.catch(e => emit(`log warn ${what}: ${errText(e)}`)),
    new Promise(resolve => {
      timer = setTimeout(() => { emit(`log warn ${what} timed out after ${ms} ms`); resolve() }, ms)
    })
  ]).finally(() => clearTimeout(timer))
}

async function runProducer () {
  // The default partitioner, remembering where each value went so an ack can
  // name its partition and offset (baseOffset + index within the partition).
  const partitionOf = new Map()
  const createPartitioner = () => {
    const inner = Partitioners.DefaultPartitioner()
    return args => {
      const p = inner(args)
      partitionOf.set(String(args.message.value), p)
      return p
    }
  }
  const producer = kafka.producer({
    idempotent: ARGS.idempotent,
    maxInFlightRequests: 1,
    createPartitioner,
    retry: RETRY
  })
  const n = { sent: 0, acked: 0, failed: 0 }
  if (await untilOk('producer connect', () => producer.connect())) {
    let start = Date.now()
    let seq = 0
    while (!stopped) {
      let due = Math.floor((Date.now() - start) * ARGS.rate / 1000) + 1
      if (due - seq > ARGS.rate) {
        // After a stall catch up at most one second's worth, then go on at --rate.
        start += (due - seq - ARGS.rate) * 1000 / ARGS.rate
        due = Math.floor((Date.now() - start) * ARGS.rate / 1000) + 1
      }
      const count = Math.min(due - seq, MAX_BATCH)
      if (count <= 0) {
        await sleep(Math.max(1, Math.min(100, (seq + 1) * 1000 / ARGS.rate - (Date.now() - start))))
        continue
      }
      const values = []
      for (let i = 0; i < count; i++) values.push(`${ARGS.clientId}-${seq + i}`)
      seq += count
      n.sent += count
      try {
        const sending = producer.send({
          topic: ARGS.topic,
          acks: -1,
          messages: values.map(v => ({ key: v, value: v }))
        })
        sending.catch(() => {}) // may reject after we gave up on it
        const md = await Promise.race([sending, afterGrace().then(() => null)])
        if (md === null) {
          emit(`log warn ${values.length} records still unsettled ${STOP_GRACE_MS} ms after stop`)
          break
        }
        const base = new Map(md.map(r => [Number(r.partition), BigInt(r.baseOffset)]))
        const index = new Map()
        for (const v of values) {
          const p = partitionOf.get(v)
          partitionOf.delete(v)
          const i = index.get(p) || 0
          index.set(p, i + 1)
          if (base.has(p)) {
            n.acked++
            emit(`ack ${v} ${p} ${base.get(p) + BigInt(i)}`)
          } else {
            n.failed++
            emit(`err ${v} no produce response for partition ${p}`)
          }
        }
      } catch (e) {
        for (const v of values) {
          partitionOf.delete(v)
          n.failed++
          emit(`err ${v} ${errText(e)}`)
        }
      }
    }
  }
  await withTimeout('producer disconnect', producer.disconnect(), 30000)
  emit(`done sent=${n.sent} acked=${n.acked} failed=${n.failed}`)
}

async function runConsumer (manual) {
  const consumer = kafka.consumer({
    groupId: ARGS.group,
    heartbeatInterval: 500,
    sessionTimeout: 6000,
    maxWaitTimeInMs: 10,
    maxBytesPerPartition: MAX_BYTES_PER_PARTITION,
    retry: {
      ...RETRY,
      restartOnFailure: async e => {
        emit(`cerr restarting after ${errText(e)}`)
        return true
      }
    }
  })
  const { CRASH, GROUP_JOIN, STOP } = consumer.events
  consumer.on(CRASH, ({ payload }) =>
    emit(`cerr crash ${errText(payload.error)} restart=${payload.restart}`))
  consumer.on(GROUP_JOIN, ({ payload }) => {
    const parts = Object.entries(payload.memberAssignment || {})
      .map(([t, ps]) => ps.map(p => `${t}/${p}`).join(',')).join(',')
    emit(`log info assigned ${parts}`)
  })
  consumer.on(STOP, () => emit('log info consumer stopped'))

  let got = 0
  const run = manual
    ? {
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
          let last = null
          for (const m of batch.messages) {
            if (!isRunning() || isStale()) break
            got++
            emit(`got ${m.value} ${batch.partition} ${m.offset}`)
            resolveOffset(m.offset)
            last = m.offset
          }
          if (last === null) return
          try {
            await consumer.commitOffsets([
              { topic: batch.topic, partition: batch.partition, offset: String(Number(last) + 1) }
            ])
            emit('commit ok')
          } catch (e) {
            emit(`commit err ${errText(e)}`)
          }
          try { await heartbeat() } catch (e) { emit(`cerr heartbeat ${errText(e)}`) }
        }
      }
    : {
        autoCommit: true,
        autoCommitInterval: 1000,
        eachMessage: async ({ topic, partition, message }) => {
          got++
          emit(`got ${message.value} ${partition} ${message.offset}`)
        }
      }

  const started = await untilOk('consumer start', async () => {
    await consumer.connect()
    await consumer.subscribe({ topics: [ARGS.topic], fromBeginning: true })
    await consumer.run(run)
  })
  if (started) await whenStopped()
  await withTimeout('consumer disconnect', consumer.disconnect(), 30000)
  emit(`done got=${got}`)
}

async function main () {
  const mode = ARGS.role === 'producer' ? ` idempotent=${ARGS.idempotent}` : ''
  emit(`log info start lib=kafkajs role=${ARGS.role} client-id=${ARGS.clientId}${mode} pid=${process.pid}`)
  if (ARGS.role === 'producer') await runProducer()
  else await runConsumer(ARGS.role === 'manual')
  clearInterval(stopTimer)
  fs.closeSync(outFd)
  process.exit(0)
}

main()
