// publish.js - a go-zero style publisher on the npm etcd3 client, for
// test_register_peers.sh: a lease of TTL seconds with autoKeepAlive, and
// PREFIX<lease id in decimal> -> HOST:PORT put under it (go-zero's layout).
//
//   node publish.js ETCD_URL PREFIX HOST:PORT [TTL]
//
// Prints "lease ID KEY" once the key is written, then keeps the lease alive
// until killed.  Exits 1 when the lease is lost.
'use strict';
const { Etcd3 } = require('etcd3');

async function main() {
  const [url, prefix, addr, ttl] = process.argv.slice(2);
  const client = new Etcd3({ hosts: url });
  const lease = client.lease(Number(ttl || 10), { autoKeepAlive: true });
  lease.on('lost', (err) => {
    console.error('publish.js: lease lost:', err.message);
    process.exit(1);
  });
  const id = await lease.grant();
  const key = prefix + id;
  await lease.put(key).value(addr);
  console.log('lease ' + id + ' ' + key);
}

main().catch((err) => {
  console.error('publish.js:', err.message);
  process.exit(1);
});
