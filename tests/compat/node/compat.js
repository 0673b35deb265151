// kafkajs against a strom server. Driven by tests/compat/test_kafkajs.py, which checks the JSON this
// prints on stdout.
//
// kafkajs has no assign() API and its consumer needs consumer groups, which Strom does not have yet, so
// reads go through kafkajs's own cluster/broker layer: the same Fetch request encoding and record-batch
// decoding its consumer uses, minus the group machinery.
//
// Usage: node compat.js '{"bootstrap":"127.0.0.1:PORT","topic":"name","t0":1700000000000}'

'use strict'

const { Kafka, CompressionTypes, logLevel } = require('kafkajs')

const args = JSON.parse(process.argv[2])
const { bootstrap, topic, t0 } = args
const keyedTopic = topic + '-keyed'

const b64 = buf => (buf === null || buf === undefined ? null : Buffer.from(buf).toString('base64'))

function clusterOf(kafka) {
  const sym = Object.getOwnPropertySymbols(kafka).find(s => s.description === 'private:Kafka:createCluster')
  if (!sym) throw new Error('kafkajs internals changed: no createCluster symbol')
  return kafka[sym]({ allowAutoTopicCreation: false })
}

async function fetchAll(cluster, topic, partition, fromOffset, highWatermark) {
  await cluster.addTargetTopic(topic)
  await cluster.refreshMetadata()
  const leaders = cluster.findLeaderForPartitions(topic, [partition])
  const [nodeId] = Object.keys(leaders)
  const broker = await cluster.findBroker({ nodeId })
  const out = []
  let offset = fromOffset
  for (let round = 0; offset < highWatermark && round < 100; round++) {
    const resp = await broker.fetch({
      replicaId: -1,
      isolationLevel: 1,
      maxWaitTime: 100,
      minBytes: 1,
      maxBytes: 10485760,
      topics: [{ topic, partitions: [{ partition, fetchOffset: String(offset), maxBytes: 1048576 }] }],
    })
    const p = resp.responses[0].partitions[0]
    if (p.errorCode !== 0) throw new Error(`fetch error ${p.errorCode}`)
    for (const m of p.messages) {
      const o = Number(m.offset)
      if (o < offset) continue // a compressed batch may start before the requested offset
      const headers = Object.entries(m.headers || {}).map(([k, v]) => [k, Array.isArray(v) ? v.map(b64) : b64(v)])
      out.push({ offset: o, key: b64(m.key), value: b64(m.value), headers, timestamp: Number(m.timestamp) })
      offset = o + 1
    }
  }
  return out
}

async function main() {
  const result = { steps: [] }
  const step = name => result.steps.push(name)
  const kafka = new Kafka({
    clientId: 'strom-kafkajs-compat',
    brokers: [bootstrap],
    logLevel: logLevel.ERROR,
    retry: { retries: 3 },
    connectionTimeout: 5000,
    requestTimeout: 15000,
  })
  const admin = kafka.admin()
  await admin.connect()
  step('admin.connect')

  result.created = await admin.createTopics({
    waitForLeaders: true,
    topics: [
      { topic, numPartitions: 3, replicationFactor: 1, configEntries: [{ name: 'retention.ms', value: '3600000' }] },
      { topic: keyedTopic, numPartitions: 4, replicationFactor: 1 },
    ],
  })
  step('admin.createTopics')
  result.duplicateCreate = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] })
    .then(v => ({ ok: v }))
    .catch(e => ({ error: e.type || e.name, nested: (e.errors || []).map(x => x.type) }))
  result.listTopics = (await admin.listTopics()).includes(topic)
  const md = await admin.fetchTopicMetadata({ topics: [topic] })
  result.metadata = md.topics.map(t => ({
    name: t.name,
    partitions: t.partitions.map(p => ({ id: p.partitionId, leader: p.leader, replicas: p.replicas, isr: p.isr })).sort((a, b) => a.id - b.id),
  }))
  step('admin.fetchTopicMetadata')

  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false })
  await producer.connect()
  const sent = []
  const acks = []
  // Explicit partitions, keys, headers, timestamps; one batch uncompressed, one gzip.
  for (const [ci, compression] of [[0, CompressionTypes.None], [1, CompressionTypes.GZIP]]) {
    const messages = []
    for (let i = 0; i < 30; i++) {
      const n = ci * 30 + i
      const m = {
        partition: n % 3,
        key: Buffer.from(`key-${n}`),
        value: Buffer.concat([Buffer.from(`value-${n}-`), Buffer.from([0, 1, 2, 255, n % 256])]),
        headers: { h1: Buffer.from('v1'), idx: Buffer.from(String(n)) },
        timestamp: String(t0 + n),
      }
      messages.push(m)
      sent.push({ partition: m.partition, key: b64(m.key), value: b64(m.value), headers: [['h1', b64(m.headers.h1)], ['idx', b64(m.headers.idx)]], timestamp: t0 + n })
    }
    const meta = await producer.send({ topic, acks: -1, compression, messages })
    acks.push(...meta.map(r => ({ partition: r.partition, errorCode: r.errorCode, baseOffset: Number(r.baseOffset) })))
  }
  step('producer.send')
  // Default partitioner (murmur2, Java compatible): same key -> same partition.
  const keyed = []
  for (let i = 0; i < 40; i++) keyed.push({ key: `user-${i % 8}`, value: `k${i}` })
  await producer.send({ topic: keyedTopic, acks: -1, messages: keyed })
  await producer.disconnect()
  result.sent = sent
  result.acks = acks

  result.offsets = (await admin.fetchTopicOffsets(topic))
    .map(o => ({ partition: o.partition, low: Number(o.low), high: Number(o.high), offset: Number(o.offset) }))
    .sort((a, b) => a.partition - b.partition)
  step('admin.fetchTopicOffsets')
  result.offsetsByTimestamp = (await admin.fetchTopicOffsetsByTimestamp(topic, t0 + 45))
    .map(o => ({ partition: o.partition, offset: Number(o.offset) }))
    .sort((a, b) => a.partition - b.partition)
  step('admin.fetchTopicOffsetsByTimestamp')

  const cfg = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: topic, configNames: ['retention.ms'] }] })
  result.describeConfigs = cfg.resources.map(r => ({ error: r.errorCode, entries: r.configEntries.map(e => [e.configName, e.configValue]) }))
  step('admin.describeConfigs')
  const cl = await admin.describeCluster()
  result.cluster = { brokers: cl.brokers.map(b => ({ nodeId: b.nodeId, host: b.host, port: b.port })), controller: cl.controller, clusterId: cl.clusterId }
  step('admin.describeCluster')

  // Read everything back through kafkajs's Fetch decoding.
  const cluster = clusterOf(kafka)
  await cluster.connect()
  result.fetched = {}
  for (const o of result.offsets) {
    result.fetched[o.partition] = await fetchAll(cluster, topic, o.partition, 0, o.high)
  }
  // From the middle of partition 1 (inside the gzip batch).
  result.fetchedFrom15 = await fetchAll(cluster, topic, 1, 15, result.offsets[1].high)
  const keyOffsets = (await admin.fetchTopicOffsets(keyedTopic)).sort((a, b) => a.partition - b.partition)
  result.keyedPartitions = {}
  result.keyedCounts = []
  for (const o of keyOffsets) {
    const msgs = await fetchAll(cluster, keyedTopic, o.partition, 0, Number(o.high))
    result.keyedCounts.push(msgs.length)
    for (const m of msgs) {
      const k = Buffer.from(m.key, 'base64').toString()
      result.keyedPartitions[k] = [...new Set([...(result.keyedPartitions[k] || []), o.partition])]
    }
  }
  await cluster.disconnect()
  step('fetch')

  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '5' }] })
  const after = await admin.fetchTopicOffsets(topic)
  result.lowAfterDeleteRecords = Number(after.find(o => o.partition === 0).low)
  step('admin.deleteTopicRecords')

  await admin.deleteTopics({ topics: [topic, keyedTopic] })
  result.listedAfterDelete = (await admin.listTopics()).includes(topic)
  step('admin.deleteTopics')
  await admin.disconnect()
  process.stdout.write(JSON.stringify(result) + '\n')
}

main().catch(e => {
  process.stderr.write(`kafkajs compat failed: ${e && e.stack ? e.stack : e}\n`)
  process.stdout.write(JSON.stringify({ fatal: String(e) }) + '\n')
  process.exit(1)
})
