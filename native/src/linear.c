/* Packed int8 Linear (block-sparse or dense) with the fused epilogue, plus the activation
 * quantizer and GELU front ends. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

struct hf_linear {
    int isa, br, bc;
    int64_t N, K, nbytes;
    hf_sparse_w *sp; /* exactly one of sp / dn */
    hf_dense_w *dn;
    int32_t *colsum; /* sum_k W[n][k]: the zero-point correction */
    float *w_scale;
    float *bias; /* NULL when packed without bias */
    int glu;     /* hf_linear_pack_geglu: channels interleaved in groups of 4 (a, g), N/2 gated outputs */
    const hf_linear *alt; /* hf_linear_set_alternative: the same Linear on the other kernel (not owned), or NULL */
    int64_t sparse_rows;  /* with alt: calls of at least this many rows run the block-sparse one of the two */
};

void hf_linear_free(hf_linear *l) {
    if (!l) return;
    hf_sparse_free(l->sp);
    hf_dense_free(l->dn);
    hf_free(l->colsum);
    hf_free(l->w_scale);
    hf_free(l->bias);
    hf_free(l);
}

/* A zeroed hf_linear with its shape and kernel set, or NULL when out of memory (pack and deserialize share it). */
static hf_linear *linear_new(int isa, int br, int bc, int64_t N, int64_t K) {
    hf_linear *l = (hf_linear *)hf_alloc(sizeof *l);
    if (!l) return NULL;
    memset(l, 0, sizeof *l);
    l->isa = isa;
    l->br = br;
    l->bc = bc;
    l->N = N;
    l->K = K;
    return l;
}

int hf_linear_pack(int isa, int block_rows, int block_cols, int64_t N, int64_t K, const int8_t *W, int64_t ldw,
                   const float *w_scale, const float *bias, hf_linear **out) {
    hf_linear *l;
    int rc;
    if (!out) return hf_fail(HF_EINVAL, "linear_pack: out is NULL");
    *out = NULL;
    if (!W || !w_scale) return hf_fail(HF_EINVAL, "linear_pack: W or w_scale is NULL");
    if (N <= 0 || K <= 0)
        return hf_fail(HF_EINVAL, "linear_pack: N=%lld and K=%lld must be > 0", (long long)N, (long long)K);
    if (ldw < K) return hf_fail(HF_EINVAL, "linear_pack: ldw=%lld < K=%lld", (long long)ldw, (long long)K);
    for (int64_t n = 0; n < N; n++)
        if (!isfinite(w_scale[n]) || (bias && !isfinite(bias[n])))
            return hf_fail(HF_EINVAL, "linear_pack: w_scale[%lld] or bias[%lld] is not finite", (long long)n,
                           (long long)n);
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    l = linear_new(isa, block_rows, block_cols, N, K);
    if (!l) return hf_fail(HF_ENOMEM, "linear_pack: out of memory");
    if (block_rows == 0 && block_cols == 0) rc = hf_dense_pack(isa, N, K, W, ldw, &l->dn);
    else rc = hf_sparse_pack(isa, block_rows, block_cols, N, K, W, ldw, &l->sp);
    if (rc != HF_OK) {
        hf_linear_free(l);
        return rc;
    }
    l->colsum = (int32_t *)hf_alloc((size_t)N * sizeof(int32_t));
    l->w_scale = (float *)hf_alloc((size_t)N * sizeof(float));
    l->bias = bias ? (float *)hf_alloc((size_t)N * sizeof(float)) : NULL;
    if (!l->colsum || !l->w_scale || (bias && !l->bias)) {
        hf_linear_free(l);
        return hf_fail(HF_ENOMEM, "linear_pack: out of memory");
    }
    for (int64_t n = 0; n < N; n++) {
        int32_t s = 0;
        for (int64_t k = 0; k < K; k++) s += W[n * ldw + k];
        l->colsum[n] = s;
    }
    memcpy(l->w_scale, w_scale, (size_t)N * sizeof(float));
    if (bias) memcpy(l->bias, bias, (size_t)N * sizeof(float));
    l->nbytes = (l->sp ? hf_sparse_nbytes(l->sp) : hf_dense_nbytes(l->dn)) + (int64_t)sizeof *l +
                N * (int64_t)(sizeof(int32_t) + sizeof(float) + (bias ? sizeof(float) : 0));
    *out = l;
    return HF_OK;
}

/* GeGLU's Linear: the rows of W (and w_scale, bias) in the epilogue's order, hf_glu_chan(j) <- a[j] and
 * hf_glu_chan(j) + 4 <- g[j], packed as any Linear. */
int hf_linear_pack_geglu(int isa, int block_rows, int block_cols, int64_t N, int64_t K, const int8_t *W, int64_t ldw,
                         const float *w_scale, const float *bias, hf_linear **out) {
    int rc;
    if (!out) return hf_fail(HF_EINVAL, "linear_pack_geglu: out is NULL");
    *out = NULL;
    if (!W || !w_scale) return hf_fail(HF_EINVAL, "linear_pack_geglu: W or w_scale is NULL");
    if (N <= 0 || N % 8 || K <= 0 || ldw < K)
        return hf_fail(HF_EINVAL, "linear_pack_geglu: N=%lld K=%lld ldw=%lld (N = 2F with F a multiple of 4, ldw >= K)",
                       (long long)N, (long long)K, (long long)ldw);
    const int64_t F = N / 2;
    int8_t *w = (int8_t *)hf_alloc((size_t)(N * K));
    float *s = (float *)hf_alloc((size_t)N * sizeof(float)), *b = bias ? (float *)hf_alloc((size_t)N * sizeof(float)) : NULL;
    if (!w || !s || (bias && !b)) {
        hf_free(w), hf_free(s), hf_free(b);
        return hf_fail(HF_ENOMEM, "linear_pack_geglu: out of memory");
    }
    for (int64_t j = 0; j < F; j++)
        for (int h = 0; h < 2; h++) { /* h = 0: the GELU input a[j] (row j), 1: its gate g[j] (row F + j) */
            const int64_t n = hf_glu_chan(j) + 4 * h, r = j + h * F;
            memcpy(w + n * K, W + r * ldw, (size_t)K);
            s[n] = w_scale[r];
            if (b) b[n] = bias[r];
        }
    rc = hf_linear_pack(isa, block_rows, block_cols, N, K, w, K, s, b, out);
    hf_free(w), hf_free(s), hf_free(b);
    if (rc == HF_OK) (*out)->glu = 1;
    return rc;
}

int hf_linear_is_geglu(const hf_linear *l) { return l && l->glu; }

int64_t hf_linear_nbytes(const hf_linear *l) { return l ? l->nbytes : 0; }
const char *hf_linear_kernel_name(const hf_linear *l) {
    if (!l) return "";
    return l->sp ? hf_sparse_kernel_name(l->sp) : hf_dense_kernel_name(l->dn);
}

int64_t hf_linear_quad_groups(const hf_linear *l) { return l && l->sp ? hf_sparse_quad_groups(l->sp) : 0; }

int hf_linear_set_alternative(hf_linear *l, const hf_linear *alt, int64_t rows) {
    if (!l) return hf_fail(HF_EINVAL, "linear_set_alternative: linear is NULL");
    if (!alt) {
        l->alt = NULL;
        return HF_OK;
    }
    if (alt->alt) return hf_fail(HF_EINVAL, "linear_set_alternative: the alternative has an alternative of its own");
    if (!l->sp == !alt->sp)
        return hf_fail(HF_EINVAL, "linear_set_alternative: one of the two must be block-sparse and the other dense");
    if (rows < 1) return hf_fail(HF_EINVAL, "linear_set_alternative: rows=%lld must be >= 1", (long long)rows);
    if (l->isa != alt->isa || l->N != alt->N || l->K != alt->K || l->glu != alt->glu || !l->bias != !alt->bias ||
        memcmp(l->colsum, alt->colsum, (size_t)l->N * sizeof(int32_t)) ||
        memcmp(l->w_scale, alt->w_scale, (size_t)l->N * sizeof(float)) ||
        (l->bias && memcmp(l->bias, alt->bias, (size_t)l->N * sizeof(float))))
        return hf_fail(HF_EINVAL, "linear_set_alternative: the two are not the same Linear (ISA, shape, GeGLU order, "
                                  "weight sums, scales or bias differ)");
    l->alt = alt;
    l->sparse_rows = rows;
    return HF_OK;
}

/* The packing of l that runs a call of M rows (see hf_linear_set_alternative). */
static const hf_linear *pick(const hf_linear *l, int64_t M) {
    if (!l->alt) return l;
    const hf_linear *sp = l->sp ? l : l->alt, *dn = l->sp ? l->alt : l;
    return M >= l->sparse_rows ? sp : dn;
}

int hf_linear_runs_sparse(const hf_linear *l, int64_t M) { return l ? pick(l, M)->sp != NULL : -1; }

int hf_linear_info(const hf_linear *l, int *isa, int64_t *N, int64_t *K, int *block_rows, int *block_cols,
                   int64_t *kept_blocks, int64_t *total_blocks) {
    if (!l) return hf_fail(HF_EINVAL, "linear_info: linear is NULL");
    if (isa) *isa = l->isa;
    if (N) *N = l->N;
    if (K) *K = l->K;
    if (block_rows) *block_rows = l->br;
    if (block_cols) *block_cols = l->bc;
    if (l->sp) return hf_sparse_info(l->sp, kept_blocks, total_blocks, NULL, NULL);
    if (kept_blocks) *kept_blocks = l->N * l->K;
    if (total_blocks) *total_blocks = l->N * l->K;
    return HF_OK;
}

/* dense path: rows split over threads; each computes int32 then the epilogue */
typedef struct {
    const hf_linear *l;
    const hf_dense_kernel *dk;
    const hf_linear_ops *ops;
    const hf_epilogue *ep;
    void (*rows)(const hf_epilogue *ep, int64_t m0, int64_t M, int64_t N, const int32_t *acc, int64_t lda, void *C,
                 int64_t ldc);
    int64_t M, lda, ldy;
    const uint8_t *A;
    char *Y;
    size_t ysz; /* bytes per output element */
    int32_t *acc;
    int64_t rows_per_unit;
    atomic_llong next;
    atomic_int rc;
} dense_job;

/* Short calls (fewer 16-row units than threads) split the output channels instead: each claims runs of whole panels
 * (SPLIT_COLS channels) and computes their int32 sums for every row; the caller runs the epilogue after. */
#define SPLIT_COLS 64
static void dense_cols_task(void *ctx, int tid, int nth) {
    dense_job *j = (dense_job *)ctx;
    (void)tid;
    (void)nth;
    const hf_dense_w *w = j->l->dn;
    const int64_t panel_bytes = j->dk->packed_size(j->dk->panel, w->K);
    for (;;) {
        const int64_t n0 = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed) * SPLIT_COLS;
        if (n0 >= w->N) break;
        hf_dense_w v = *w; /* the panels of channels [n0, n0 + SPLIT_COLS): a weight of their own */
        v.N = n0 + SPLIT_COLS < w->N ? SPLIT_COLS : w->N - n0;
        v.data = (char *)w->data + (n0 / j->dk->panel) * panel_bytes;
        int rc = j->dk->gemm(&v, j->M, j->A, j->lda, j->acc + n0, j->l->N);
        if (rc != HF_OK) {
            atomic_store(&j->rc, rc);
            break;
        }
    }
}

static void dense_task(void *ctx, int tid, int nth) {
    dense_job *j = (dense_job *)ctx;
    (void)tid;
    (void)nth;
    for (;;) {
        const int64_t lo = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed) * j->rows_per_unit;
        if (lo >= j->M) break;
        const int64_t hi = lo + j->rows_per_unit < j->M ? lo + j->rows_per_unit : j->M;
        int32_t *acc = j->acc + lo * j->l->N;
        int rc = j->dk->gemm(j->l->dn, hi - lo, j->A + lo * j->lda, j->lda, acc, j->l->N);
        if (rc != HF_OK) {
            atomic_store(&j->rc, rc);
            break;
        }
        j->rows(j->ep, lo, hi - lo, j->l->N, acc, j->l->N, j->Y + (size_t)(lo * j->ldy) * j->ysz, j->ldy);
    }
}

/* Shared by the float and u8 front ends: mode is HF_EPI_F32 or HF_EPI_U8 (Y is float or uint8). */
static int linear_run(const hf_linear *l, int64_t M, const uint8_t *A, int64_t lda, float a_scale, int32_t a_zp,
                      int mode, void *Y, int64_t ldy, int flags, const float *residual, int64_t ldr, float y_scale,
                      int32_t y_zp, const float *y_mul, int64_t seg, const float *seg_scale, const int32_t *seg_zp,
                      int64_t pack_ld, int packed_in) {
    hf_epilogue ep;
    if (!l) return hf_fail(HF_EINVAL, "linear_forward: linear is NULL");
    if (M < 0) return hf_fail(HF_EINVAL, "linear_forward: M=%lld < 0", (long long)M);
    l = pick(l, M);
    if (M == 0) return HF_OK;
    if (!A || !Y) return hf_fail(HF_EINVAL, "linear_forward: A or Y is NULL");
    if (lda < l->K) return hf_fail(HF_EINVAL, "linear_forward: lda=%lld < K=%lld", (long long)lda, (long long)l->K);
    const int64_t width = l->glu ? l->N / 2 : l->N; /* output channels */
    if (ldy < width) return hf_fail(HF_EINVAL, "linear_forward: ldy=%lld < N=%lld", (long long)ldy, (long long)width);
    if (l->glu && (mode != HF_EPI_U8 || flags || residual || seg))
        return hf_fail(HF_EINVAL, "linear_forward: the Linear is packed for GeGLU (hf_linear_pack_geglu): it runs only "
                                  "as hf_linear_forward_u8 / hf_linear_chain without GELU flag, residual or segments");
    if (residual && ldr < l->N)
        return hf_fail(HF_EINVAL, "linear_forward: ldr=%lld < N=%lld", (long long)ldr, (long long)l->N);
    if (flags & ~HF_LINEAR_GELU) return hf_fail(HF_EINVAL, "linear_forward: unknown flags 0x%x", flags);
    if (!(a_scale > 0.f) || !isfinite(a_scale))
        return hf_fail(HF_EINVAL, "linear_forward: a_scale=%g must be finite and > 0", (double)a_scale);
    if (a_zp < 0 || a_zp > 255) return hf_fail(HF_EINVAL, "linear_forward: a_zp=%d is not in [0, 255]", (int)a_zp);
    if (!hf_isa_supported(l->isa))
        return hf_fail(HF_EUNSUPPORTED, "linear_forward: packed for '%s', which this CPU cannot run", hf_isa_name(l->isa));
    if (mode == HF_EPI_U8 && (!(y_scale > 0.f) || !isfinite(y_scale) || y_zp < 0 || y_zp > 255))
        return hf_fail(HF_EINVAL, "linear_forward_u8: output scale %g / zero point %d invalid", (double)y_scale, (int)y_zp);
    memset(&ep, 0, sizeof ep);
    ep.f32 = mode;
    ep.q_scale = y_scale;
    ep.q_zp = y_zp;
    ep.q_mul = mode == HF_EPI_U8 ? y_mul : NULL;
    ep.q_seg = seg;
    ep.q_seg_scale = seg_scale;
    ep.q_seg_zp = seg_zp;
    ep.gelu = flags & HF_LINEAR_GELU;
    ep.a_zp = a_zp;
    ep.a_scale = a_scale;
    ep.colsum = l->colsum;
    ep.w_scale = l->w_scale;
    ep.bias = l->bias;
    ep.residual = residual;
    ep.ldr = ldr;
    ep.pack_ld = pack_ld;
    ep.glu = l->glu;
    /* GeGLU: the x86 kernels' tile stores take whole (a, g) groups; elsewhere (ref, ARM: 4-channel tiles) the
     * reference rows epilogue applies it to the int32 accumulators, which is also what the unfused path computes there */
    const int glu_rows = l->glu && !hf_glu_tile_stores(l->isa);
    if (l->sp && glu_rows) {
        hf_epilogue e0 = ep;
        e0.f32 = HF_EPI_S32, e0.glu = 0;
        int32_t *acc = (int32_t *)hf_scratch(HF_SCRATCH_LINEAR_ACC, (size_t)(M * l->N) * sizeof(int32_t));
        if (!acc) return hf_fail(HF_ENOMEM, "linear_forward: out of memory for accumulators");
        int rc = hf_sparse_kernel_for(l->isa)->gemm(l->sp, M, A, lda, acc, l->N, &e0);
        if (rc == HF_OK) hf_epilogue_rows_ref(&ep, 0, M, l->N, acc, l->N, Y, ldy);
        return rc;
    }
    if (l->sp) {
        const hf_sparse_kernel *k = hf_sparse_kernel_for(l->isa);
        return (packed_in ? k->gemm_packed : k->gemm)(l->sp, M, A, lda, Y, ldy, &ep);
    }
    {
        dense_job j;
        int nth = hf_get_num_threads();
        memset(&j, 0, sizeof j);
        j.l = l;
        j.dk = hf_dense_kernel_for_variant(l->isa, l->dn->variant);
        j.ops = hf_linear_ops_for(l->isa);
        j.rows = glu_rows ? hf_epilogue_rows_ref : j.ops->epilogue_rows;
        j.ep = &ep;
        j.M = M;
        j.lda = lda;
        j.ldy = ldy;
        j.A = A;
        j.Y = (char *)Y;
        j.ysz = mode == HF_EPI_U8 ? 1 : sizeof(float);
        j.acc = (int32_t *)hf_scratch(HF_SCRATCH_LINEAR_ACC, (size_t)(M * l->N) * sizeof(int32_t));
        if (!j.acc) return hf_fail(HF_ENOMEM, "linear_forward: out of memory for accumulators");
        j.rows_per_unit = 16;
        atomic_init(&j.next, 0);
        atomic_init(&j.rc, HF_OK);
        const int64_t units = (M + 15) / 16, chunks = (l->N + SPLIT_COLS - 1) / SPLIT_COLS;
        if (units < nth && chunks > 1 && j.dk->panel > 0 && SPLIT_COLS % j.dk->panel == 0) {
            hf_parallel(dense_cols_task, &j, (int)(chunks < nth ? chunks : nth));
            if (atomic_load(&j.rc) == HF_OK) j.rows(j.ep, 0, M, l->N, j.acc, l->N, Y, ldy);
            return atomic_load(&j.rc);
        }
        hf_parallel(dense_task, &j, (int)(units < nth ? units : nth));
        return atomic_load(&j.rc);
    }
}

int hf_linear_forward(const hf_linear *l, int64_t M, const uint8_t *A, int64_t lda, float a_scale, int32_t a_zp,
                      float *Y, int64_t ldy, int flags, const float *residual, int64_t ldr) {
    return linear_run(l, M, A, lda, a_scale, a_zp, HF_EPI_F32, Y, ldy, flags, residual, ldr, 1.f, 0, NULL, 0, NULL, NULL,
                      0, 0);
}

int hf_linear_forward_u8(const hf_linear *l, int64_t M, const uint8_t *A, int64_t lda, float a_scale, int32_t a_zp,
                         uint8_t *Y, int64_t ldy, int flags, const float *residual, int64_t ldr, float y_scale,
                         int32_t y_zp, const float *y_mul) {
    return linear_run(l, M, A, lda, a_scale, a_zp, HF_EPI_U8, Y, ldy, flags, residual, ldr, y_scale, y_zp, y_mul, 0, NULL,
                      NULL, 0, 0);
}

int hf_linear_forward_u8_seg(const hf_linear *l, int64_t M, const uint8_t *A, int64_t lda, float a_scale, int32_t a_zp,
                             uint8_t *Y, int64_t ldy, int64_t seg, const float *seg_scale, const int32_t *seg_zp) {
    if (!l || !seg_scale || !seg_zp) return hf_fail(HF_EINVAL, "linear_forward_u8_seg: NULL argument");
    if (seg <= 0 || seg % 16 || l->N % seg)
        return hf_fail(HF_EINVAL, "linear_forward_u8_seg: segment width %lld must be a positive multiple of 16 dividing N=%lld",
                       (long long)seg, (long long)l->N);
    for (int64_t i = 0; i < l->N / seg; i++)
        if (!(seg_scale[i] > 0.f) || !isfinite(seg_scale[i]) || seg_zp[i] < 0 || seg_zp[i] > 255)
            return hf_fail(HF_EINVAL, "linear_forward_u8_seg: output scale %g / zero point %d of segment %lld invalid",
                           (double)seg_scale[i], (int)seg_zp[i], (long long)i);
    return linear_run(l, M, A, lda, a_scale, a_zp, HF_EPI_U8, Y, ldy, 0, NULL, 0, 1.f, 0, NULL, seg, seg_scale, seg_zp, 0,
                      0);
}

/* l1's uint8 output feeds l2 without a row-major round trip when both are 4x1-sparse on a kernel with gemm_packed
 * (which also honours ep->pack_ld): l1's epilogue writes l2's packed activations (no transpose there, no pack pass
 * in l2). */
static int chain_packed(const hf_linear *l1, const hf_linear *l2) {
    return l1->sp && l2->sp && l1->br == 4 && l2->br == 4 && l1->isa == l2->isa &&
           hf_sparse_kernel_for(l1->isa)->gemm_packed != NULL;
}

/* channels of l1's output: N, or N/2 gated channels for GeGLU's Linear */
static int64_t out_width(const hf_linear *l) { return l->glu ? l->N / 2 : l->N; }

int64_t hf_linear_chain_scratch_bytes(const hf_linear *l1, const hf_linear *l2, int64_t M) {
    if (!l1 || !l2 || M < 0) return 0;
    l1 = pick(l1, M), l2 = pick(l2, M); /* as hf_linear_chain will for the same M */
    return chain_packed(l1, l2) ? hf_packed_act_bytes(M, out_width(l1)) : M * out_width(l1);
}

int hf_linear_chain(const hf_linear *l1, const hf_linear *l2, int64_t M, const uint8_t *A, int64_t lda, float a_scale,
                    int32_t a_zp, int flags1, float h_scale, int32_t h_zp, const float *h_mul, uint8_t *hbuf, float *Y,
                    int64_t ldy, const float *residual, int64_t ldr) {
    int rc;
    if (!l1 || !l2 || !hbuf) return hf_fail(HF_EINVAL, "linear_chain: NULL linear or scratch");
    l1 = pick(l1, M), l2 = pick(l2, M);
    const int64_t w1 = out_width(l1);
    if (w1 != l2->K)
        return hf_fail(HF_EINVAL, "linear_chain: the first linear gives %lld channels, the second takes K=%lld",
                       (long long)w1, (long long)l2->K);
    if ((uintptr_t)hbuf % 64) return hf_fail(HF_EINVAL, "linear_chain: hbuf must be 64-byte aligned");
    if (!chain_packed(l1, l2)) {
        if ((rc = hf_linear_forward_u8(l1, M, A, lda, a_scale, a_zp, hbuf, w1, flags1, NULL, 0, h_scale, h_zp,
                                       h_mul)) != HF_OK)
            return rc;
        return hf_linear_forward(l2, M, hbuf, w1, h_scale, h_zp, Y, ldy, 0, residual, ldr);
    }
    if ((rc = linear_run(l1, M, A, lda, a_scale, a_zp, HF_EPI_U8, hbuf, w1, flags1, NULL, 0, h_scale, h_zp, h_mul, 0,
                         NULL, NULL, hf_packed_act_bytes(1, w1), 0)) != HF_OK) /* one token tile */
        return rc;
    return linear_run(l2, M, hbuf, l2->K, h_scale, h_zp, HF_EPI_F32, Y, ldy, 0, residual, ldr, 1.f, 0, NULL, 0, NULL, NULL,
                      0, 1);
}

int hf_quantize_u8(int isa, int64_t n, const float *x, float scale, int32_t zp, uint8_t *y) {
    int rc;
    if (n < 0) return hf_fail(HF_EINVAL, "quantize_u8: n=%lld < 0", (long long)n);
    if (n > 0 && (!x || !y)) return hf_fail(HF_EINVAL, "quantize_u8: x or y is NULL");
    if (!(scale > 0.f) || !isfinite(scale))
        return hf_fail(HF_EINVAL, "quantize_u8: scale=%g must be finite and > 0", (double)scale);
    if (zp < 0 || zp > 255) return hf_fail(HF_EINVAL, "quantize_u8: zero point %d is not in [0, 255]", (int)zp);
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    hf_linear_ops_for(isa)->quantize(n, x, scale, zp, y);
    return HF_OK;
}

int hf_quantize_u8_mul(int isa, int64_t rows, int64_t n, const float *x, const float *mul, float scale, int32_t zp,
                       uint8_t *y) {
    int rc;
    if (rows < 0 || n < 0) return hf_fail(HF_EINVAL, "quantize_u8_mul: rows=%lld n=%lld < 0", (long long)rows, (long long)n);
    if (rows > 0 && n > 0 && (!x || !y || !mul)) return hf_fail(HF_EINVAL, "quantize_u8_mul: x, mul or y is NULL");
    if (!(scale > 0.f) || !isfinite(scale))
        return hf_fail(HF_EINVAL, "quantize_u8_mul: scale=%g must be finite and > 0", (double)scale);
    if (zp < 0 || zp > 255) return hf_fail(HF_EINVAL, "quantize_u8_mul: zero point %d is not in [0, 255]", (int)zp);
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    const hf_linear_ops *ops = hf_linear_ops_for(isa);
    for (int64_t r = 0; r < rows && n > 0; r++) ops->quantize_mul(n, x + r * n, mul, scale, zp, y + r * n);
    return HF_OK;
}

int hf_gelu(int isa, int64_t n, const float *x, float *y) {
    int rc;
    if (n < 0) return hf_fail(HF_EINVAL, "gelu: n=%lld < 0", (long long)n);
    if (n > 0 && (!x || !y)) return hf_fail(HF_EINVAL, "gelu: x or y is NULL");
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    hf_linear_ops_for(isa)->gelu(n, x, y);
    return HF_OK;
}

/* ---- save / restore (hf_linear_serialize / hf_linear_deserialize) ----
 * header: HF_SER_FIELDS int64 (below), then colsum[N] int32, w_scale[N] f32, bias[N] f32 (if any),
 * work[ntiles + 1] int64 (sparse), the kernel's packed data. Native byte order: the cache is per machine. */
#define HF_SER_MAGIC 0x31504c4646484c48LL /* "HLHFFLP1" */
enum { SER_MAGIC, SER_ISA, SER_BR, SER_BC, SER_N, SER_K, SER_BIAS, SER_VARIANT, SER_KEPT, SER_TOTAL, SER_NTILES,
       SER_DATA, HF_SER_FIELDS };

static int64_t ser_data_bytes(const hf_linear *l) {
    /* sparse nbytes = kernel data + the struct + work[] (hf_sparse_pack); dense nbytes = kernel data */
    return l->sp ? l->sp->nbytes - (int64_t)sizeof *l->sp - (l->sp->ntiles + 1) * (int64_t)sizeof(int64_t)
                 : l->dn->nbytes;
}

int64_t hf_linear_serialized_size(const hf_linear *l) {
    if (!l) return 0;
    return HF_SER_FIELDS * 8 + l->N * (4 + 4 + (l->bias ? 4 : 0)) + (l->sp ? (l->sp->ntiles + 1) * 8 : 0) +
           ser_data_bytes(l);
}

int hf_linear_serialize(const hf_linear *l, void *buf, int64_t cap) {
    int64_t h[HF_SER_FIELDS];
    char *p = (char *)buf;
    if (!l || !buf) return hf_fail(HF_EINVAL, "linear_serialize: linear or buffer is NULL");
    if (cap < hf_linear_serialized_size(l))
        return hf_fail(HF_EINVAL, "linear_serialize: buffer of %lld bytes < %lld", (long long)cap,
                       (long long)hf_linear_serialized_size(l));
    h[SER_MAGIC] = HF_SER_MAGIC;
    h[SER_ISA] = l->isa;
    h[SER_BR] = l->br;
    h[SER_BC] = l->bc;
    h[SER_N] = l->N;
    h[SER_K] = l->K;
    h[SER_BIAS] = (l->bias != NULL) | (l->glu << 1); /* bit 1: GeGLU's channel order (hf_linear_pack_geglu) */
    h[SER_VARIANT] = l->sp ? l->sp->variant : l->dn->variant;
    h[SER_KEPT] = l->sp ? l->sp->kept : 0;
    h[SER_TOTAL] = l->sp ? l->sp->total : 0;
    h[SER_NTILES] = l->sp ? l->sp->ntiles : 0;
    h[SER_DATA] = ser_data_bytes(l);
    memcpy(p, h, sizeof h);
    p += sizeof h;
    memcpy(p, l->colsum, (size_t)l->N * 4);
    p += l->N * 4;
    memcpy(p, l->w_scale, (size_t)l->N * 4);
    p += l->N * 4;
    if (l->bias) {
        memcpy(p, l->bias, (size_t)l->N * 4);
        p += l->N * 4;
    }
    if (l->sp) {
        memcpy(p, l->sp->work, (size_t)(l->sp->ntiles + 1) * 8);
        p += (l->sp->ntiles + 1) * 8;
    }
    memcpy(p, l->sp ? l->sp->data : l->dn->data, (size_t)h[SER_DATA]);
    return HF_OK;
}

int hf_linear_deserialize(const void *buf, int64_t size, hf_linear **out) {
    int64_t h[HF_SER_FIELDS], need;
    const char *p = (const char *)buf;
    hf_linear *l;
    int isa, br, bc, variant;
    if (!out) return hf_fail(HF_EINVAL, "linear_deserialize: out is NULL");
    *out = NULL;
    if (!buf || size < (int64_t)sizeof h) return hf_fail(HF_EFORMAT, "linear_deserialize: truncated header");
    memcpy(h, p, sizeof h);
    p += sizeof h;
    if (h[SER_MAGIC] != HF_SER_MAGIC) return hf_fail(HF_EFORMAT, "linear_deserialize: bad magic (not a packed Linear "
                                                                 "of this library version)");
    if (h[SER_ISA] < 0 || h[SER_ISA] >= HF_ISA_COUNT) return hf_fail(HF_EFORMAT, "linear_deserialize: bad ISA");
    isa = (int)h[SER_ISA];
    if (!hf_isa_supported(isa))
        return hf_fail(HF_EUNSUPPORTED, "linear_deserialize: packed for '%s', which this CPU cannot run",
                       hf_isa_name(isa));
    if (!((h[SER_BR] == 0 && h[SER_BC] == 0) || (h[SER_BR] == 4 && h[SER_BC] == 1) ||
          (h[SER_BR] == 1 && h[SER_BC] == 4)))
        return hf_fail(HF_EFORMAT, "linear_deserialize: bad block shape");
    br = (int)h[SER_BR];
    bc = (int)h[SER_BC];
    if (h[SER_N] <= 0 || h[SER_N] > ((int64_t)1 << 30) || h[SER_K] <= 0 || h[SER_K] > HF_MAX_K ||
        (h[SER_BIAS] & ~(int64_t)3) || ((h[SER_BIAS] & 2) && h[SER_N] % 8) || (h[SER_VARIANT] != HF_VARIANT_DEFAULT && h[SER_VARIANT] != HF_VARIANT_S7) ||
        h[SER_DATA] <= 0 || h[SER_DATA] > size)
        return hf_fail(HF_EFORMAT, "linear_deserialize: bad shape, flags or data size");
    variant = (int)h[SER_VARIANT];
    const int64_t N = h[SER_N], K = h[SER_K];
    if (br == 0) {
        const hf_dense_kernel *k = hf_dense_kernel_for_variant(isa, variant);
        if (!k || k->packed_size(N, K) != h[SER_DATA])
            return hf_fail(HF_EFORMAT, "linear_deserialize: dense data size does not match N=%lld K=%lld",
                           (long long)N, (long long)K);
        if (h[SER_KEPT] || h[SER_TOTAL] || h[SER_NTILES]) return hf_fail(HF_EFORMAT, "linear_deserialize: bad header");
    } else {
        const int64_t total = ((N + br - 1) / br) * ((K + bc - 1) / bc);
        if (h[SER_NTILES] != (N + 7) / 8 || h[SER_TOTAL] != total || h[SER_KEPT] < 0 || h[SER_KEPT] > total)
            return hf_fail(HF_EFORMAT, "linear_deserialize: sparse header does not match N=%lld K=%lld", (long long)N,
                           (long long)K);
    }
    need = (int64_t)sizeof h + N * (8 + (h[SER_BIAS] & 1 ? 4 : 0)) + (br ? (h[SER_NTILES] + 1) * 8 : 0) + h[SER_DATA];
    if (size != need)
        return hf_fail(HF_EFORMAT, "linear_deserialize: %lld bytes, expected %lld (truncated or padded)",
                       (long long)size, (long long)need);
    l = linear_new(isa, br, bc, N, K);
    if (!l) return hf_fail(HF_ENOMEM, "linear_deserialize: out of memory");
    l->colsum = (int32_t *)hf_alloc((size_t)N * 4);
    l->w_scale = (float *)hf_alloc((size_t)N * 4);
    l->bias = h[SER_BIAS] & 1 ? (float *)hf_alloc((size_t)N * 4) : NULL;
    l->glu = (int)(h[SER_BIAS] >> 1);
    if (br == 0) {
        l->dn = (hf_dense_w *)hf_alloc(sizeof *l->dn);
        if (l->dn) {
            memset(l->dn, 0, sizeof *l->dn);
            l->dn->data = hf_alloc((size_t)h[SER_DATA]);
        }
    } else {
        l->sp = (hf_sparse_w *)hf_alloc(sizeof *l->sp);
        if (l->sp) {
            memset(l->sp, 0, sizeof *l->sp);
            l->sp->work = (int64_t *)hf_alloc((size_t)(h[SER_NTILES] + 1) * 8);
            l->sp->data = hf_alloc((size_t)h[SER_DATA]);
        }
    }
    if (!l->colsum || !l->w_scale || ((h[SER_BIAS] & 1) && !l->bias) || (br == 0 && (!l->dn || !l->dn->data)) ||
        (br != 0 && (!l->sp || !l->sp->work || !l->sp->data))) {
        hf_linear_free(l);
        return hf_fail(HF_ENOMEM, "linear_deserialize: out of memory");
    }
    memcpy(l->colsum, p, (size_t)N * 4);
    p += N * 4;
    memcpy(l->w_scale, p, (size_t)N * 4);
    p += N * 4;
    if (l->bias) {
        memcpy(l->bias, p, (size_t)N * 4);
        p += N * 4;
    }
    for (int64_t n = 0; n < N; n++)
        if (!isfinite(l->w_scale[n]) || (l->bias && !isfinite(l->bias[n]))) {
            hf_linear_free(l);
            return hf_fail(HF_EFORMAT, "linear_deserialize: w_scale or bias is not finite");
        }
    if (br == 0) {
        l->dn->isa = isa;
        l->dn->variant = variant;
        l->dn->N = N;
        l->dn->K = K;
        l->dn->nbytes = h[SER_DATA];
        memcpy(l->dn->data, p, (size_t)h[SER_DATA]);
    } else {
        hf_sparse_w *w = l->sp;
        w->isa = isa;
        w->br = br;
        w->bc = bc;
        w->variant = variant;
        w->N = N;
        w->K = K;
        w->kept = h[SER_KEPT];
        w->total = h[SER_TOTAL];
        w->ntiles = h[SER_NTILES];
        memcpy(w->work, p, (size_t)(w->ntiles + 1) * 8);
        p += (w->ntiles + 1) * 8;
        /* threads split tiles on this prefix sum (hf_split_tiles): it must start at 0 and never decrease */
        for (int64_t t = 0; t <= w->ntiles; t++)
            if ((t == 0 && w->work[0] != 0) || (t > 0 && w->work[t] < w->work[t - 1])) {
                hf_linear_free(l);
                return hf_fail(HF_EFORMAT, "linear_deserialize: bad work prefix");
            }
        memcpy(w->data, p, (size_t)h[SER_DATA]);
        w->nbytes = h[SER_DATA] + (int64_t)sizeof *w + (w->ntiles + 1) * (int64_t)sizeof(int64_t);
    }
    l->nbytes = (l->sp ? l->sp->nbytes : l->dn->nbytes) + (int64_t)sizeof *l +
                N * (int64_t)(sizeof(int32_t) + sizeof(float) + (l->bias ? sizeof(float) : 0));
    *out = l;
    return HF_OK;
}
