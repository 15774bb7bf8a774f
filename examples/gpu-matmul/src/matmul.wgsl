// C = A·B for n×n row-major f32 matrices, 16×16 tiles through workgroup memory.
// Dispatch ceil(n/16) × ceil(n/16) workgroups. dims[0] = n.
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read> dims: array<u32>;

const TILE: u32 = 16u;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = dims[0];
    let row = gid.y;
    let col = gid.x;
    var acc = 0.0;
    let tiles = (n + TILE - 1u) / TILE;
    for (var t = 0u; t < tiles; t++) {
        let ac = t * TILE + lid.x;
        let br = t * TILE + lid.y;
        var av = 0.0;
        if (row < n && ac < n) { av = a[row * n + ac]; }
        var bv = 0.0;
        if (br < n && col < n) { bv = b[br * n + col]; }
        ta[lid.y][lid.x] = av;
        tb[lid.y][lid.x] = bv;
        workgroupBarrier();
        for (var k = 0u; k < TILE; k++) {
            acc += ta[lid.y][k] * tb[k][lid.x];
        }
        workgroupBarrier();
    }
    if (row < n && col < n) {
        c[row * n + col] = acc;
    }
}
