"""Start a fakepve (PyPI `fakepve[crypto]`) for InfraFlux's Proxmox tests and bench.

    INFRAFLUX_FAKEPVE_TOKEN='root@pam!ci=SECRET' python fakepve_launcher.py --host 127.0.0.7 --nodes 3

Prints one line once it listens:

    fakepve listening on https://127.0.0.7:PORT fingerprint=AB:CD:... cafile=/tmp/.../fakepve.crt

then reads commands from stdin, one JSON object per line, and answers each with one line,
`ok <json>` or `err <message>`. It exits when stdin closes, so it never outlives the test
that started it. Only loopback addresses are accepted.

Besides what fakepve 0.5 does by itself, this launcher adds PVE's semantics for
`PUT /nodes/{node}/qemu/{vmid}/resize` (grow only, absolute `40G` or relative `+2G`),
which fakepve answers generically without changing the disk; the used bytes of each
storage in `/cluster/resources` (`disk`), which fakepve reports as 0: here the sum of the
sizes of the volumes on the storage, as PVE reports what the storage's volumes occupy;
and a VM's `maxdisk` there, which fakepve takes from the first disk in key order (the
EFI disk of an OVMF VM): PVE reports the boot disk's size (qemu-server's
`bootdisk_size`: the first disk of `boot: order=…` that is not a CD-ROM, else the legacy
`bootdisk` key, else nothing, 0). Everything else is the fake's own.
"""

import argparse
import asyncio
import hashlib
import ipaddress
import json
import os
import re
import shutil
import sys
import tempfile

from fakepve import FakePve
from fakepve.certs import make_cert
from fakepve.model import PveError, TaskError

UNITS = {'': 1, 'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3, 'T': 1024 ** 4}


def size_bytes(text):
    found = re.fullmatch(r'(\d+(?:\.\d+)?)([KMGT]?)', text)
    if not found:
        raise ValueError(text)
    return int(float(found.group(1)) * UNITS[found.group(2)])


def size_text(size):
    for unit in 'TGMK':
        if size and size % UNITS[unit] == 0:
            return '{0}{1}'.format(size // UNITS[unit], unit)
    return str(size)


# Tasks that take PVE's storage lock for a disk allocation, resize or free (pve-storage
# `cluster_lock_storage` around `vdisk_alloc`, LVM `volume_resize`, `vdisk_free`).
STORAGE_TASKS = ('qmcreate', 'resize', 'qmdestroy')


class LauncherPve(FakePve):
    """FakePve plus a resize that changes the disk and storages that report their usage."""

    # PVE seconds each storage-locking task takes (fakepve's own take none): a
    # measurement, so that tasks that overlap are seen overlapping.
    storage_task_secs = 0.0

    def storage_tasks_in_flight(self):
        if not hasattr(self, '_storage_tasks'):
            self._storage_tasks = {'now': {}, 'most': {}}
        return self._storage_tasks

    # Creates left before the API tokens are revoked (None: never), as an administrator
    # would delete them in the middle of an apply; the revoked ones, for `restore_tokens`.
    revoke_tokens_after_creates = None
    revoked_tokens = {}

    def revoke_tokens(self):
        self.revoked_tokens = {**self.revoked_tokens, **self.apitokens}
        self.apitokens.clear()

    async def task(self, node, ttype, tid, user, body, vm=None, lock=True, log=()):
        upid = await self._storage_counted_task(node, ttype, tid, user, body, vm=vm, lock=lock, log=log)
        if ttype == 'qmcreate' and self.revoke_tokens_after_creates is not None:
            self.revoke_tokens_after_creates -= 1
            if self.revoke_tokens_after_creates <= 0:
                self.revoke_tokens_after_creates = None
                self.revoke_tokens()
        return upid

    async def _storage_counted_task(self, node, ttype, tid, user, body, vm=None, lock=True, log=()):
        if ttype not in STORAGE_TASKS:
            return await super().task(node, ttype, tid, user, body, vm=vm, lock=lock, log=log)
        counts = self.storage_tasks_in_flight()

        async def counted():
            # Per node: InfraFlux's tests put every VM disk of a node on one storage.
            counts['now'][node] = counts['now'].get(node, 0) + 1
            counts['most'][node] = max(counts['most'].get(node, 0), counts['now'][node])
            try:
                await self.pause(self.storage_task_secs)
                return await body()
            finally:
                counts['now'][node] -= 1
        return await super().task(node, ttype, tid, user, counted, vm=vm, lock=lock, log=log)

    def _storage_resource(self, node, name):
        item = super()._storage_resource(node, name)
        if item is not None:
            used = sum(int(volume.get('size') or 0) for volume in self._volumes(name).values())
            item['disk'] = used
            item['maxdisk'] = max(item['maxdisk'], used)
        return item

    @staticmethod
    def _vm_maxdisk(vm):
        boot = str(vm.config.get('boot') or '')
        if boot.startswith('order='):
            disks = [d for d in re.split('[;, ]', boot[len('order='):]) if d]
        elif vm.config.get('bootdisk'):
            disks = [vm.config['bootdisk']]
        else:
            disks = []
        for disk in disks:
            value = str(vm.config.get(disk) or '')
            if not value or 'media=cdrom' in value or value.split(',')[0] in ('none', 'cdrom'):
                continue
            for part in value.split(',')[1:]:
                if part.startswith('size='):
                    return size_bytes(part[5:])
            return 0
        return 0

    def _routes_infraflux(self):
        return [('PUT', '/nodes/{node}/qemu/{vmid}/resize', self._infraflux_resize)]

    async def _infraflux_resize(self, v, user):
        vm = self.find(v['node'], v['vmid'])
        disk = v['disk']
        if disk not in vm.config:
            raise PveError(500, 'disk {0!r} does not exist'.format(disk))
        parts = str(vm.config[disk]).split(',')
        current = 0
        for part in parts[1:]:
            if part.startswith('size='):
                current = size_bytes(part[5:])
        wanted = v['size']
        relative = wanted.startswith('+')
        try:
            new = size_bytes(wanted.lstrip('+'))
        except ValueError:
            raise PveError(400, 'Parameter verification failed.', {'size': 'unable to parse size'}) from None
        new = current + new if relative else new
        if new < current:
            raise PveError(500, 'shrinking disks is not supported')

        async def body():
            kept = [p for p in parts[1:] if not p.startswith('size=')]
            vm.config[disk] = ','.join([parts[0]] + sorted(kept + ['size=' + size_text(new)]))
        return await self.task(vm.node, 'resize', vm.vmid, user, body, vm=vm)


def add_vms(pve, count, nodes, first_vmid):
    """count stopped VMs spread over the nodes, shaped like InfraFlux's."""
    for i in range(count):
        vmid = first_vmid + i
        node = nodes[i % len(nodes)]
        pve.add_vm(vmid, 'bench-{0}'.format(vmid), node=node, status='running', config={
            'cores': 2, 'sockets': 1, 'memory': '4096', 'tags': 'bench;infraflux',
            'scsi0': 'local-lvm:vm-{0}-disk-0,discard=on,size=40G'.format(vmid),
            'net0': 'virtio=BC:24:11:{0:02X}:{1:02X}:{2:02X},bridge=vmbr0'.format(
                (vmid >> 16) & 255, (vmid >> 8) & 255, vmid & 255),
            'ipconfig0': 'ip=10.1.{0}.{1}/16,gw=10.1.0.1'.format(vmid // 250, vmid % 250 + 1),
            'nameserver': '10.1.0.1', 'agent': '1', 'boot': 'order=scsi0',
        })


async def command(pve, request):
    op = request['op']
    if op == 'fail':
        pve.fail(request['method'], request['suffix'], status=request.get('status'),
                 message=request.get('message'), error=request.get('error'), times=request.get('times'))
        return None
    if op == 'clear_failures':
        pve.failures.clear()
        return None
    if op == 'node_offline':
        pve.set_node_offline(request['node'], request.get('offline', True))
        return None
    if op == 'lock':
        pve.snapshot_lock(request['vmid'], request.get('lock', 'backup'))
        return None
    if op == 'unlock':
        pve.unlock(request['vmid'])
        return None
    if op == 'revoke_tokens':
        # Every API token deleted (`pveum user token remove`), at once or after that many
        # more VM creates have been accepted.
        after = request.get('after_creates')
        if after:
            pve.revoke_tokens_after_creates = int(after)
        else:
            pve.revoke_tokens()
        return None
    if op == 'restore_tokens':
        pve.apitokens.update(pve.revoked_tokens)
        pve.revoked_tokens.clear()
        return None
    if op == 'flaky_network':
        # A share of requests dropped (connection reset before PVE reads them).
        pve.flaky_network(drop_rate=float(request.get('drop_rate', 0)), seed=request.get('seed'))
        if request.get('seed') is not None:
            # fakepve seeds its randomness when it starts only.
            pve._random.seed(request['seed'])
        return None
    if op == 'time_scale':
        pve.time_scale = float(request['value'])
        return None
    if op == 'slow_network':
        pve.slow_network(float(request['latency']))
        return None
    if op == 'migrate':
        vm = pve.vm(request['vmid'])
        pve.nodes.setdefault(request['target'], {'online': True})
        vm.node = request['target']
        return None
    if op == 'requests':
        return len(pve.requests)
    if op == 'request_log':
        # (method, path) of the requests from index `since` on.
        return [[method, path] for method, path, _ in pve.requests[int(request.get('since', 0)):]]
    if op == 'storage_task_secs':
        pve.storage_task_secs = float(request['value'])
        return None
    if op == 'storage_tasks_reset':
        pve.storage_tasks_in_flight()['most'].clear()
        return None
    if op == 'storage_tasks_most':
        # The most storage-locking tasks seen running at once, per node.
        return pve.storage_tasks_in_flight()['most']
    if op == 'vms':
        return [{'vmid': vm.vmid, 'name': vm.name, 'node': vm.node, 'status': vm.status, 'config': vm.config,
                 'pending': vm.pending} for vm in pve.vms]
    if op == 'volumes':
        return sorted(pve.storages[request['storage']].get('volumes', {}))
    raise ValueError('unknown op {0!r}'.format(op))


async def serve(args):
    if not ipaddress.ip_address(args.host).is_loopback:
        sys.exit('fakepve_launcher: only loopback addresses')
    pve = LauncherPve(user='root@pam', password=os.environ.get('INFRAFLUX_FAKEPVE_PASSWORD', 'secret'),
                      host=args.host, port=args.port)
    pve.time_scale = args.time_scale
    # The bench reads the log of a whole apply (`request_log`).
    pve.max_requests = 1000000
    nodes = ['pve{0}'.format(n) for n in range(1, args.nodes + 1)]
    for node in nodes:
        pve.add_node(node)
    token = os.environ.get('INFRAFLUX_FAKEPVE_TOKEN', '')
    if token:
        tokenid, _, secret = token.partition('=')
        pve.apitokens[tokenid] = secret
    if args.import_content:
        pve.storages['local']['content'] = 'iso,vztmpl,backup,import'
    add_vms(pve, args.vms, nodes, args.first_vmid)
    tmp = tempfile.mkdtemp(prefix='infraflux-fakepve-')
    try:
        certfile, keyfile, der = make_cert(tmp, hosts=(args.host,))
        await pve.start(certfile, keyfile)
        fingerprint = ':'.join('{0:02X}'.format(b) for b in hashlib.sha256(der).digest())
        print('fakepve listening on {0} fingerprint={1} cafile={2}'.format(pve.url, fingerprint, certfile),
              flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                result = await command(pve, json.loads(line))
                print('ok ' + json.dumps(result), flush=True)
            except (PveError, TaskError, ValueError, KeyError, TypeError) as e:
                print('err ' + str(e).replace('\n', ' '), flush=True)
        await pve.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--host', default='127.0.0.2')
    parser.add_argument('--port', type=int, default=0)
    parser.add_argument('--nodes', type=int, default=3)
    parser.add_argument('--vms', type=int, default=0, help='VMs to start with, spread over the nodes')
    parser.add_argument('--first-vmid', type=int, default=5000)
    parser.add_argument('--time-scale', type=float, default=0.0)
    parser.add_argument('--import-content', action='store_true', help="allow 'import' content on storage local")
    asyncio.run(serve(parser.parse_args()))


if __name__ == '__main__':
    main()
