// Workgroup argmin with subgroup operations (wgpu enables them through
// Features::SUBGROUP; naga needs no `enable` directive): each subgroup reduces in
// registers, and one lane per subgroup folds its result into two workgroup
// atomics, value first, then the lowest index among lanes holding that value.
// Works for any subgroup size (lavapipe's is 8, GPUs' 16 to 128).

var<workgroup> wg_min: atomic<i32>;
var<workgroup> wg_idx: atomic<u32>;

fn reduce_argmin(v: i32, i: u32, lid: u32) -> u32 {
    // One lane per subgroup: the lowest active one.
    let leader = subgroupBroadcastFirst(lid) == lid;
    if (lid == 0u) {
        // No sum exceeds CHOSEN: it is the minimum's identity.
        atomicStore(&wg_min, CHOSEN);
        atomicStore(&wg_idx, 0xffffffffu);
    }
    workgroupBarrier();
    let m = subgroupMin(v);
    if (leader) {
        atomicMin(&wg_min, m);
    }
    workgroupBarrier();
    let gm = atomicLoad(&wg_min);
    let mi = subgroupMin(select(0xffffffffu, i, v == gm));
    if (leader) {
        atomicMin(&wg_idx, mi);
    }
    workgroupBarrier();
    let winner = atomicLoad(&wg_idx);
    workgroupBarrier();
    return winner;
}
