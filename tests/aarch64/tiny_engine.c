/* A tiny engine plan run from C, checked against a golden file written by the x86 build (make aarch64-golden):
 * 2 layers (H 32, 2 heads, F 48), every weight shape (4x1, 1x4, dense), fp32 attention on layer 0 and int8 attention
 * on layer 1, a padded batch and a CLS / Linear / tanh / Linear head. The golden holds
 *   - the u8 output of each Linear (hf_linear_forward_u8 on fixed inputs, no GELU): integer path, bit for bit;
 *   - the engine's fp32 output: compared within ENGINE_TOL (absolute), since LayerNorm, GELU, attention and expf
 *     differ by an ulp or so between the x86 SIMD kernels and the references aarch64 runs.
 * Usage: tiny_engine --write FILE | --check FILE */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_fast.h"

#define ENGINE_TOL 1e-4
#define H 32
#define HEADS 2
#define F 48
#define VOCAB 50
#define MAXPOS 16
#define B 2
#define S 9

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frnd(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() % 65536) / 65536.f; }
static void die(const char *what) {
    fprintf(stderr, "tiny_engine: %s failed: %s\n", what, hf_last_error());
    exit(2);
}

/* W[N][K] with ~70% of the br x bc blocks zero (br = 0: dense, ~all kept) */
static hf_linear *make_linear(int br, int bc, int64_t N, int64_t K, int8_t *W) {
    float ws[256], bias[256];
    hf_linear *l = NULL;
    for (int64_t i = 0; i < N * K; i++) W[i] = (int8_t)((int)(rnd() % 255) - 127);
    if (br)
        for (int64_t n0 = 0; n0 < N; n0 += br)
            for (int64_t k0 = 0; k0 < K; k0 += bc)
                if (rnd() % 10 < 7)
                    for (int r = 0; r < br; r++)
                        for (int c = 0; c < bc; c++) W[(n0 + r) * K + k0 + c] = 0;
    for (int64_t n = 0; n < N; n++) ws[n] = frnd(0.5f, 1.5f) / (127.f * sqrtf((float)K)), bias[n] = frnd(-0.1f, 0.1f);
    if (hf_linear_pack(HF_ISA_AUTO, br, bc, N, K, W, K, ws, bias, &l) != HF_OK) die("hf_linear_pack");
    return l;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "--write") && strcmp(argv[1], "--check"))) {
        fprintf(stderr, "usage: tiny_engine --write FILE | --check FILE\n");
        return 2;
    }
    const int write = strcmp(argv[1], "--write") == 0;
    static int8_t W[3 * H * F];
    static float word[VOCAB * H], pos[MAXPOS * H], type[2 * H], g[H], bta[H], hw1[H * H], hb1[H], hw2[3 * H], hb2[3];
    static uint8_t A[S * F], U[S * 3 * H];
    static float out[B * 3];
    hf_linear *lin[2][4];
    uint8_t *u8out = NULL;
    int64_t nu8 = 0;
    hf_engine *e = NULL;
    hf_engine_model_desc md;
    if (hf_init() != HF_OK) die("hf_init");
    hf_set_num_threads(2);
    memset(&md, 0, sizeof md);
    md.size = sizeof md, md.version = HF_ENGINE_DESC_VERSION, md.isa = HF_ISA_AUTO, md.linear_bias = HF_BIAS_ALL;
    md.hidden = H, md.heads = HEADS, md.ffn = F, md.layers = 2, md.vocab = VOCAB, md.max_pos = MAXPOS;
    md.type_vocab = 2, md.embedding_size = H;
    if (hf_engine_create(&md, &e) != HF_OK) die("hf_engine_create");
    for (int i = 0; i < VOCAB * H; i++) word[i] = frnd(-1, 1);
    for (int i = 0; i < MAXPOS * H; i++) pos[i] = frnd(-0.5f, 0.5f);
    for (int i = 0; i < 2 * H; i++) type[i] = frnd(-0.2f, 0.2f);
    for (int i = 0; i < H; i++) g[i] = frnd(0.8f, 1.2f), bta[i] = frnd(-0.1f, 0.1f);
    if (hf_engine_set_embeddings(e, word, pos, type, g, bta, 1e-12f) != HF_OK) die("set_embeddings");
    /* block shapes per layer: qkv, attn_out, ffn_in, ffn_out */
    static const int blk[2][4][2] = {{{4, 1}, {1, 4}, {0, 0}, {4, 1}}, {{1, 4}, {0, 0}, {4, 1}, {1, 4}}};
    const int64_t shp[4][2] = {{3 * H, H}, {H, H}, {F, H}, {H, F}};
    for (int L = 0; L < 2; L++) {
        for (int i = 0; i < 4; i++) {
            lin[L][i] = make_linear(blk[L][i][0], blk[L][i][1], shp[i][0], shp[i][1], W);
            /* integer path: this Linear's u8 output on fixed activations */
            for (int64_t j = 0; j < S * shp[i][1]; j++) A[j] = (uint8_t)rnd();
            if (hf_linear_forward_u8(lin[L][i], S, A, shp[i][1], 0.02f, 128, U, shp[i][0], 0, NULL, 0, 0.03f,
                                     120, NULL) != HF_OK)
                die("hf_linear_forward_u8");
            u8out = realloc(u8out, (size_t)(nu8 + S * shp[i][0]));
            memcpy(u8out + nu8, U, (size_t)(S * shp[i][0]));
            nu8 += S * shp[i][0];
        }
        hf_attn_quant aq = {0.05f, 0.05f, 0.05f, 1.f / 255.f, 128, 128, 128, 0};
        hf_engine_layer_desc d;
        memset(&d, 0, sizeof d);
        d.qkv = lin[L][0], d.attn_out = lin[L][1], d.ffn_in = lin[L][2], d.ffn_out = lin[L][3];
        d.qkv_scale = 0.05f, d.o_scale = 0.02f, d.i_scale = 0.05f, d.f_scale = 0.02f;
        d.qkv_zp = 128, d.o_zp = 128, d.i_zp = 128, d.f_zp = 10;
        d.att_scale = 1.f / sqrtf((float)(H / HEADS));
        d.ln1_g = d.ln2_g = g, d.ln1_b = d.ln2_b = bta, d.ln1_eps = d.ln2_eps = 1e-12f;
        d.attn_q = L == 1 ? &aq : NULL;
        if (hf_engine_set_layer(e, L, &d) != HF_OK) die("hf_engine_set_layer");
    }
    for (int i = 0; i < H * H; i++) hw1[i] = frnd(-0.2f, 0.2f);
    for (int i = 0; i < H; i++) hb1[i] = frnd(-0.1f, 0.1f);
    for (int i = 0; i < 3 * H; i++) hw2[i] = frnd(-0.3f, 0.3f);
    for (int i = 0; i < 3; i++) hb2[i] = frnd(-0.1f, 0.1f);
    if (hf_engine_add_head_op(e, HF_HEAD_CLS, 0, 0, NULL, NULL) != HF_OK ||
        hf_engine_add_head_op(e, HF_HEAD_LINEAR, H, H, hw1, hb1) != HF_OK ||
        hf_engine_add_head_op(e, HF_HEAD_TANH, 0, 0, NULL, NULL) != HF_OK ||
        hf_engine_add_head_op(e, HF_HEAD_LINEAR, 3, H, hw2, hb2) != HF_OK)
        die("hf_engine_add_head_op");
    int64_t ids[B * S], mask[B * S], types[B * S];
    for (int i = 0; i < B * S; i++) {
        ids[i] = rnd() % VOCAB;
        mask[i] = !(i >= S && i % S >= 6); /* the second sequence has 6 real tokens */
        types[i] = i % S >= 5;
    }
    if (hf_engine_run(e, B, S, ids, mask, types, out, B * 3) != HF_OK) die("hf_engine_run");
    printf("tiny engine on %s: %lld u8 Linear outputs, %d fp32 outputs\n", hf_isa_name(hf_engine_isa(e)),
           (long long)nu8, B * 3);

    int rc = 0;
    FILE *fp = fopen(argv[2], write ? "w" : "r");
    if (!fp) {
        perror(argv[2]);
        return 2;
    }
    if (write) {
        fprintf(fp, "# tests/aarch64/tiny_engine.c on x86 (%s): u8 Linear outputs, then engine fp32 outputs\n",
                hf_isa_name(hf_engine_isa(e)));
        for (int64_t i = 0; i < nu8; i++) fprintf(fp, "%d%c", u8out[i], (i + 1) % 32 ? ' ' : '\n');
        fprintf(fp, "\n");
        for (int i = 0; i < B * 3; i++) fprintf(fp, "%.9g\n", out[i]);
    } else {
        char line[512];
        int bad = 0;
        double maxd = 0;
        if (!fgets(line, sizeof line, fp)) return 2;
        for (int64_t i = 0; i < nu8; i++) {
            int v;
            if (fscanf(fp, "%d", &v) != 1) return fprintf(stderr, "golden: truncated\n"), 2;
            bad += v != u8out[i];
        }
        for (int i = 0; i < B * 3; i++) {
            double v;
            if (fscanf(fp, "%lf", &v) != 1) return fprintf(stderr, "golden: truncated\n"), 2;
            maxd = fabs(v - out[i]) > maxd ? fabs(v - out[i]) : maxd;
        }
        printf("  u8 Linear outputs: %d of %lld differ from the x86 golden (must be 0)\n", bad, (long long)nu8);
        printf("  engine fp32 outputs: max |diff| %.3g (tolerance %g)\n", maxd, ENGINE_TOL);
        rc = bad != 0 || !(maxd <= ENGINE_TOL);
        printf(rc ? "tiny engine: FAILED\n" : "tiny engine: matches the x86 golden\n");
    }
    fclose(fp);
    hf_engine_free(e);
    for (int L = 0; L < 2; L++)
        for (int i = 0; i < 4; i++) hf_linear_free(lin[L][i]);
    free(u8out);
    return rc;
}
