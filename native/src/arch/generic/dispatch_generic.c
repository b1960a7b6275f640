/* Any architecture without a folder of its own (not x86 or aarch64): the reference table only. */
#include "internal.h"

void hf_arch_detect(int supported[HF_ISA_COUNT]) { (void)supported; }

const hf_isa_table *hf_arch_table(int isa) {
    (void)isa;
    return NULL;
}
