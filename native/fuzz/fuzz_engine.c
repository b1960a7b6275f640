/* libFuzzer target for the C ABI (issue 7): every byte string becomes a sequence of calls with fuzzed
 * dimensions, scales, block shapes, head programs and token ids on hf_engine_* / hf_linear_* / hf_sparse_* /
 * hf_quantize_u8. Buffers are always as large as the dimensions the harness passes (the C side cannot know a
 * pointer's length), so any ASan/UBSan report is a bug in the library. Status codes are ignored: the
 * library must refuse bad values with an error, never crash.
 *
 *   clang (from the repository root):  clang -fsanitize=fuzzer,address,undefined ... native/fuzz/fuzz_engine.c \
 *           $(python native/build_native.py --sources)
 *   gcc:    the same sources + standalone_main.c (replays the corpus, then random inputs for N seconds)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hf_fast.h"

typedef struct {
    const uint8_t *p;
    size_t n;
} rd_t;

static uint32_t u32(rd_t *r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = (v << 8) | (r->n ? (r->n--, *r->p++) : 0);
    return v;
}
static uint8_t u8(rd_t *r) { return r->n ? (r->n--, *r->p++) : 0; }
/* small dimension, occasionally a hostile one */
static int64_t dim(rd_t *r, int64_t small) {
    uint8_t k = u8(r);
    switch (k & 15) {
    case 0: return 0;
    case 1: return -1 - (int64_t)(u8(r));
    case 2: return (int64_t)1 << (31 + (u8(r) & 31));
    default: return 1 + (int64_t)(u32(r) % (uint32_t)small);
    }
}
static float fval(rd_t *r) {
    static const float special[] = {0.f, -0.f, 1.f, 0.01f, 1e-45f, 3.4e38f, -1.f, 255.f};
    uint8_t k = u8(r);
    if (k < 200) return 0.001f + (float)(k % 50) * 0.01f;
    if (k < 208) return special[k - 200];
    uint32_t bits = u32(r); /* arbitrary bit pattern: NaN, inf, denormals */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void fill_i8(rd_t *r, int8_t *w, int64_t n) {
    uint8_t density = u8(r);
    for (int64_t i = 0; i < n; i++) w[i] = (u8(r) < density) ? (int8_t)u8(r) : 0;
}

static int small_ok(int64_t v, int64_t lim) { return v > 0 && v <= lim; }

static void fuzz_linear(rd_t *r) {
    int64_t N = dim(r, 40), K = dim(r, 40), M = dim(r, 9);
    int br = u8(r) % 6, bc;
    static const int shapes[6][2] = {{0, 0}, {4, 1}, {1, 4}, {2, 2}, {-4, 1}, {4, 4}};
    bc = shapes[br][1], br = shapes[br][0];
    int isa = (int)(u8(r) % 5) - 2;
    if (!small_ok(N, 64) || !small_ok(K, 64) || !small_ok(M, 16)) {
        hf_linear *l = NULL; /* hostile dims: must be refused without touching the (NULL) buffers */
        if (hf_linear_pack(isa, br, bc, N, K, NULL, K, NULL, NULL, &l) == HF_OK) abort();
        return;
    }
    int8_t *w = malloc((size_t)(N * K));
    float *sc = malloc((size_t)N * 4), *bias = malloc((size_t)N * 4), *y = malloc((size_t)(M * N) * 4);
    float *res = malloc((size_t)(M * N) * 4);
    uint8_t *a = malloc((size_t)(M * K));
    fill_i8(r, w, N * K);
    for (int64_t i = 0; i < N; i++) sc[i] = fval(r), bias[i] = fval(r);
    for (int64_t i = 0; i < M * K; i++) a[i] = u8(r);
    for (int64_t i = 0; i < M * N; i++) res[i] = fval(r);
    hf_linear *l = NULL;
    if (hf_linear_pack(isa, br, bc, N, K, w, K, sc, (u8(r) & 1) ? bias : NULL, &l) == HF_OK) {
        int32_t zp = (int32_t)(u8(r)) - (u8(r) < 8 ? 300 : 0);
        hf_linear_forward(l, M, a, K, fval(r), zp, y, N, u8(r) & 1, (u8(r) & 1) ? res : NULL, N);
        hf_linear_free(l);
    }
    hf_quantize_u8(isa, M * N, res, fval(r), (int32_t)u8(r) - (u8(r) < 8 ? 300 : 0), (uint8_t *)y);
    free(w), free(sc), free(bias), free(y), free(res), free(a);
}

static hf_engine_model_desc model_desc(int64_t H, int64_t heads, int64_t F, int64_t L, int64_t vocab, int64_t max_pos,
                                       int64_t type_vocab, int64_t E) {
    hf_engine_model_desc d;
    memset(&d, 0, sizeof d);
    d.size = sizeof d, d.version = HF_ENGINE_DESC_VERSION, d.isa = HF_ISA_AUTO, d.linear_bias = HF_BIAS_ALL;
    d.hidden = H, d.heads = heads, d.ffn = F, d.layers = L, d.vocab = vocab, d.max_pos = max_pos;
    d.type_vocab = type_vocab, d.embedding_size = E, d.embed_proj = E != H;
    return d;
}

static void fuzz_engine(rd_t *r) {
    int64_t H = 4 * (1 + u8(r) % 6), heads = 1 + u8(r) % 4, F = 1 + u8(r) % 40, vocab = 1 + u8(r) % 30;
    int64_t max_pos = 1 + u8(r) % 12, type_vocab = u8(r) % 3;
    int64_t E = (u8(r) & 1) ? 1 + u8(r) % 24 : H; /* E != H: the embeddings projection */
    hf_engine *e = NULL;
    if ((u8(r) & 7) == 0) { /* hostile create: dimensions, enum values, window, size and version */
        int64_t win = (int64_t)(u8(r) % 3) - 1;
        hf_engine_model_desc d = model_desc(dim(r, 64), dim(r, 8), dim(r, 64), 1, dim(r, 32), dim(r, 32), dim(r, 4),
                                            dim(r, 32));
        d.isa = (int32_t)(u8(r) % 6) - 2, d.norm = (int32_t)(u8(r) % 3) - (u8(r) < 8);
        d.activation = (int32_t)(u8(r) % 5), d.position = (int32_t)(u8(r) % 4), d.attn_bias = (int32_t)(u8(r) % 3);
        d.linear_bias = u8(r), d.embed_proj = (int32_t)(u8(r) % 3);
        d.rel_buckets = (int32_t)(u8(r) % 40) - 2, d.rel_max_distance = (int64_t)(u8(r) % 140) - 4; /* relative bias */
        d.attn_window = (u8(r) & 1) ? &win : NULL;
        if (u8(r) < 8) d.size += 8;
        if (u8(r) < 8) d.version += 1;
        hf_engine_create(&d, &e);
        if (e) hf_engine_free(e);
        return;
    }
    hf_engine_model_desc md = model_desc(H, heads, F, 1, vocab, max_pos, type_vocab, E);
    if (hf_engine_create(&md, &e) != HF_OK) return;
    float *word = calloc((size_t)(vocab * E), 4), *pos = calloc((size_t)(max_pos * E), 4);
    const int64_t EH = E > H ? E : H; /* g, b serve the embeddings (E) and the layer (H) LayerNorms */
    float *type = calloc((size_t)((type_vocab + 1) * E), 4), *g = malloc((size_t)EH * 4), *b = calloc((size_t)EH, 4);
    for (int64_t i = 0; i < vocab * E; i++) word[i] = fval(r);
    for (int64_t i = 0; i < EH; i++) g[i] = fval(r);
    hf_engine_set_embeddings(e, word, pos, type_vocab ? type : NULL, g, b, fval(r));
    if (E != H && (u8(r) & 15)) { /* sometimes left unset: the run must refuse the half-built engine */
        float *pw = malloc((size_t)(H * E) * 4);
        for (int64_t i = 0; i < H * E; i++) pw[i] = fval(r);
        hf_engine_set_embeddings_project(e, pw, (u8(r) & 1) ? NULL : pw);
        free(pw);
    }
    const int64_t shp[4][2] = {{3 * H, H}, {H, H}, {F, H}, {H, F}};
    hf_linear *lin[4] = {0};
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        int64_t n = shp[i][0], k = shp[i][1];
        if (u8(r) == 255) n += 1; /* occasionally the wrong shape: set_layer must refuse it */
        int8_t *w = malloc((size_t)(n * k));
        float *sc = malloc((size_t)n * 4);
        fill_i8(r, w, n * k);
        for (int64_t j = 0; j < n; j++) sc[j] = 0.01f;
        static const int bs[3][2] = {{0, 0}, {4, 1}, {1, 4}};
        int s = u8(r) % 3;
        if (hf_linear_pack(-1, bs[s][0], bs[s][1], n, k, w, k, sc, NULL, &lin[i]) != HF_OK) ok = 0;
        free(w), free(sc);
    }
    if (ok) {
        hf_engine_layer_desc d;
        memset(&d, 0, sizeof d);
        d.qkv = lin[0], d.attn_out = lin[1], d.ffn_in = lin[2], d.ffn_out = lin[3];
        d.qkv_scale = fval(r), d.o_scale = fval(r), d.i_scale = fval(r), d.f_scale = fval(r);
        d.qkv_zp = u8(r), d.o_zp = u8(r), d.i_zp = u8(r), d.f_zp = (u8(r) < 4) ? 256 : 128;
        d.att_scale = fval(r);
        d.ln1_g = d.ln2_g = g, d.ln1_b = d.ln2_b = b, d.ln1_eps = fval(r), d.ln2_eps = 1e-5f;
        /* int8 attention on about half the layers, with fuzzed (sometimes invalid) scales and zero points */
        hf_attn_quant aq = {fval(r), fval(r), fval(r), fval(r), u8(r), u8(r), (u8(r) < 4) ? 300 : u8(r), u8(r)};
        if (u8(r) & 1) d.attn_q = &aq;
        hf_engine_set_layer(e, (u8(r) < 8) ? 1 : 0, &d);
        /* head program: up to 5 ops of fuzzed kinds and widths */
        int64_t width = H;
        int nops = u8(r) % 6;
        for (int i = 0; i < nops; i++) {
            int kind = (int)(u8(r) % 6) - (u8(r) < 4 ? 1 : 0);
            int64_t n = 1 + u8(r) % 200, k = (u8(r) < 16) ? width + 1 : width;
            float *w = calloc((size_t)(n * (k > 0 ? k : 1)), 4), *hb = calloc((size_t)n, 4);
            if (hf_engine_add_head_op(e, kind, n, k, w, hb) == HF_OK && kind == HF_HEAD_LINEAR) width = n;
            free(w), free(hb);
        }
        int64_t B = 1 + u8(r) % 4, S = 1 + u8(r) % 14; /* S may exceed max_pos */
        int64_t *ids = malloc((size_t)(B * S) * 8), *mask = malloc((size_t)(B * S) * 8), *tt = malloc((size_t)(B * S) * 8);
        for (int64_t i = 0; i < B * S; i++) {
            ids[i] = (int64_t)(u8(r) % (vocab + 2)) - (u8(r) < 4 ? 1 : 0);
            mask[i] = u8(r) & 1;
            tt[i] = u8(r) % 3;
        }
        int64_t cap = B * S * (width > H ? width : H) + 8;
        float *out = malloc((size_t)cap * 4);
        int64_t want = (hf_engine_token_level(e) ? B * S : B) * hf_engine_output_width(e);
        hf_engine_run(e, B, S, ids, (u8(r) & 1) ? mask : NULL, (u8(r) & 1) ? tt : NULL, out,
                      (u8(r) < 16) ? want + 1 : (want <= cap ? want : cap));
        /* the packed entry point on the same buffers: lengths 0..S (0 is refused), first positions 0..3 (past the
         * table is refused), sum(lens) <= B * S tokens */
        int64_t lens[4], pos0[4], T = 0;
        for (int64_t i = 0; i < B; i++) lens[i] = u8(r) % (S + 1), pos0[i] = u8(r) % 4, T += lens[i];
        int64_t want_p = (hf_engine_token_level(e) ? T : B) * hf_engine_output_width(e);
        hf_engine_run_packed(e, B, lens, (u8(r) & 1) ? pos0 : NULL, ids, (u8(r) & 1) ? tt : NULL, out,
                             (u8(r) < 16) ? want_p + 1 : (want_p <= cap ? want_p : cap));
        free(ids), free(mask), free(tt), free(out);
    }
    hf_engine_free(e);
    for (int i = 0; i < 4; i++) hf_linear_free(lin[i]);
    free(word), free(pos), free(type), free(g), free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int inited;
    if (!inited) hf_init(), hf_set_num_threads(2), inited = 1;
    rd_t r = {data, size};
    switch (u8(&r) % 3) {
    case 0: fuzz_linear(&r); break;
    default: fuzz_engine(&r); break;
    }
    return 0;
}
