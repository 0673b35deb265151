// One kafkajs 2.2.4 group consumer, driven by tests/groups (the same line protocol as gworker.py).
//
//   node gconsumer.js '{"bootstrap":"127.0.0.1:PORT","topic":"t","group":"g","client_id":"kjs","session_timeout_ms":6000}'
//
// Prints one JSON line per event: {"ev":"msg",p,o,k,v} for every message, then {"ev":"commit",p,o} once
// commitOffsets for the next offset returned; {"ev":"assign","parts":[...]} on every group join.
// Commands on stdin: nocommit, pause, resume, close (disconnect, which sends LeaveGroup, then exit).
//
// kafkajs's only built-in assigner is round robin, but it calls the protocol "RoundRobinAssigner",
// a name no other client offers, so a group of kafkajs + librdkafka + kafka-python members would have
// no protocol in common (INCONSISTENT_GROUP_PROTOCOL). The same assigner renamed "roundrobin" (the
// name Java, librdkafka and kafka-python use for round robin) joins them; the assignment bytes are the
// standard ConsumerProtocol encoding either way.

'use strict'

const path = require('path')
const readline = require('readline')
const { Kafka, PartitionAssigners, logLevel } = require(path.resolve(__dirname, '../../compat/node/node_modules/kafkajs'))

const cfg = JSON.parse(process.argv[2])
const emit = (ev, extra = {}) => process.stdout.write(JSON.stringify({ ev, t: Number(process.hrtime.bigint()) / 1e9, ...extra }) + '\n')

const RoundRobin = config => ({ ...PartitionAssigners.roundRobin(config), name: 'roundrobin' })

const state = { commit: true, paused: false }

async function main() {
  const kafka = new Kafka({
    clientId: cfg.client_id,
    brokers: [cfg.bootstrap],
    logLevel: logLevel.ERROR,
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  const consumer = kafka.consumer({
    groupId: cfg.group,
    partitionAssigners: [RoundRobin],
    sessionTimeout: cfg.session_timeout_ms || 6000,
    rebalanceTimeout: 60000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 100,
    retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  consumer.on(consumer.events.GROUP_JOIN, e => {
    const parts = (e.payload.memberAssignment[cfg.topic] || []).slice().sort((a, b) => a - b)
    emit('assign', { parts, leader: e.payload.isLeader, protocol: e.payload.groupProtocol })
  })
  consumer.on(consumer.events.CRASH, e => emit('error', { msg: String(e.payload.error) }))

  const rl = readline.createInterface({ input: process.stdin })
  let closing = false
  rl.on('line', async line => {
    const cmd = line.trim()
    if (cmd === 'nocommit') state.commit = false
    else if (cmd === 'pause') { state.paused = true; consumer.pause([{ topic: cfg.topic }]) }
    else if (cmd === 'resume') { state.paused = false; consumer.resume([{ topic: cfg.topic }]) }
    emit('ack', { cmd })
    if (cmd === 'close' && !closing) {
      closing = true
      await consumer.disconnect()
      emit('closed')
      process.exit(0)
    }
  })

  await consumer.connect()
  await consumer.subscribe({ topics: [cfg.topic], fromBeginning: true })
  emit('ready')
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ topic, partition, message }) => {
      const o = Number(message.offset)
      emit('msg', { p: partition, o, k: message.key ? message.key.toString() : null, v: message.value ? message.value.toString() : null })
      if (state.commit) {
        try {
          await consumer.commitOffsets([{ topic, partition, offset: String(o + 1) }])
          emit('commit', { p: partition, o: o + 1 })
        } catch (e) {
          emit('commit_error', { p: partition, o: o + 1, msg: String(e) })
        }
      }
    },
  })
}

main().catch(e => { emit('fatal', { msg: String(e && e.stack) }); process.exit(1) })
