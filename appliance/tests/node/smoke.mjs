// Xen Orchestra's `xen-api` client against keel-hosted: connect, load every
// object, follow an event. Usage: node smoke.mjs URL PASSWORD [TRANSPORT]
// (TRANSPORT: auto, json-rpc or xml-rpc). Exits non-zero on any failure.
import { createClient } from 'xen-api'

const [url, password, transport = 'auto'] = process.argv.slice(2)
const deadline = setTimeout(() => {
  console.error(`xen-api (${transport}): timed out`)
  process.exit(1)
}, 30_000)

const fail = message => {
  console.error(`xen-api (${transport}): ${message}`)
  process.exit(1)
}

const xapi = createClient({ url, auth: { user: 'root', password }, allowUnauthorized: true, transport })
xapi.on('eventFetchingError', error => fail(`event loop: ${error?.code ?? error}`))

await xapi.connect()
await xapi.objectsFetched

const byType = {}
for (const object of Object.values(xapi.objects.all)) {
  byType[object.$type] = (byType[object.$type] ?? 0) + 1
}
for (const type of ['pool', 'host', 'host_metrics', 'network', 'PIF']) {
  if (byType[type] !== 1) fail(`expected one ${type}, got ${byType[type]}`)
}
const pool = xapi.pool
if (pool.master === undefined || xapi.getObjectByRef(pool.master).$type !== 'host') fail('pool.master is not the host')

// A change made through the API comes back through event.from.
const key = `xo:smoke:${transport}:${process.pid}`
await xapi.call('pool.add_to_other_config', pool.$ref, key, '1')
for (let i = 0; ; i++) {
  if (xapi.getObjectByRef(pool.$ref).other_config[key] === '1') break
  if (i > 200) fail('the pool change never arrived as an event')
  await new Promise(resolve => setTimeout(resolve, 25))
}
await xapi.call('pool.remove_from_other_config', pool.$ref, key)

await xapi.disconnect()
clearTimeout(deadline)
const summary = Object.entries(byType).sort().map(([t, n]) => `${t}=${n}`).join(' ')
console.log(`xen-api (${transport}): connected, loaded ${summary}, followed an event`)
process.exit(0)
