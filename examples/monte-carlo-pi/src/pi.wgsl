// Monte Carlo π: each invocation throws params[0] points with its own PCG stream (seeded by
// params[1] and its index) and writes how many fell inside the quarter circle.
@group(0) @binding(0) var<storage, read_write> counts: array<u32>;
@group(0) @binding(1) var<storage, read> params: array<u32>;

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

@compute @workgroup_size(256)
fn sample(@builtin(global_invocation_id) gid: vec3<u32>) {
    var state = pcg(gid.x ^ pcg(params[1]));
    var inside = 0u;
    for (var i = 0u; i < params[0]; i++) {
        state = pcg(state);
        let x = f32(state >> 8u) / 16777216.0;
        state = pcg(state);
        let y = f32(state >> 8u) / 16777216.0;
        if (x * x + y * y <= 1.0) {
            inside++;
        }
    }
    counts[gid.x] = inside;
}
