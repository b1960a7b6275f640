/* Any architecture without a folder of its own (aarch64 until it has kernels): the reference table only. */
#include "internal.h"

void hf_arch_detect(int supported[HF_ISA_COUNT]) { (void)supported; }

const hf_isa_table *hf_arch_table(int isa) {
    (void)isa;
    return NULL;
}
