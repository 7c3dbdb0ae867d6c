// Workgroup argmin through shared memory: a tree over WG lanes
// (WG is a power of two), lowest value first, then lowest index.

var<workgroup> red_v: array<i32, WG>;
var<workgroup> red_i: array<u32, WG>;

fn reduce_argmin(v: i32, i: u32, lid: u32) -> u32 {
    red_v[lid] = v;
    red_i[lid] = i;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            let ov = red_v[lid + half];
            let oi = red_i[lid + half];
            if (ov < red_v[lid] || (ov == red_v[lid] && oi < red_i[lid])) {
                red_v[lid] = ov;
                red_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    let winner = red_i[0];
    workgroupBarrier();
    return winner;
}
