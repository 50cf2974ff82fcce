/* src/arch/switch_aarch64.h - context switch for AArch64 (AAPCS64): x19-x28, the frame
 * pointer x29, the link register x30 and the low halves d8-d15 of v8-v15. */
#ifndef RILL_ARCH_SWITCH_AARCH64_H
#define RILL_ARCH_SWITCH_AARCH64_H

/* Frame that rill__ctx_switch leaves on a suspended stack, lowest address first. */
typedef struct {
    uint64_t x19, x20, x21, x22, x23, x24, x25, x26, x27, x28;
    uint64_t x29, x30; /* x30: where the switch returns to */
    uint64_t d8, d9, d10, d11, d12, d13, d14, d15;
} rill__ctx_frame;

void rill__ctx_entry(void);

/* Prepares a new stack whose highest address is `top` so that the first switch to the
 * returned stack pointer calls entry(arg).  The entry must never return. */
static inline void *rill__ctx_init(void *top, void (*entry)(void *), void *arg)
{
    uintptr_t t = ((uintptr_t)top & ~(uintptr_t)15) - 16;
    rill__ctx_frame *fr = (rill__ctx_frame *)(t - sizeof(rill__ctx_frame));
    *fr = (rill__ctx_frame){.x19 = (uint64_t)(uintptr_t)arg,
                            .x20 = (uint64_t)(uintptr_t)entry,
                            .x30 = (uint64_t)(uintptr_t)rill__ctx_entry};
    return fr;
}

#ifdef RILL__CTX_DEFINE
/* x0: where to save this stack pointer; x1: the stack pointer to resume.  The frame is
 * 160 bytes, so sp stays 16-byte aligned.  rill__ctx_entry: x19 holds arg, x20 the entry;
 * x29 is 0 so backtraces end here. */
__asm__(".text\n"
        ".globl rill__ctx_switch\n"
        ".hidden rill__ctx_switch\n"
        ".type rill__ctx_switch,%function\n"
        ".p2align 4\n"
        "rill__ctx_switch:\n"
        "  sub sp, sp, #160\n"
        "  stp x19, x20, [sp, #0]\n"
        "  stp x21, x22, [sp, #16]\n"
        "  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n"
        "  stp x27, x28, [sp, #64]\n"
        "  stp x29, x30, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n"
        "  stp d10, d11, [sp, #112]\n"
        "  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n"
        "  mov x2, sp\n"
        "  str x2, [x0]\n"
        "  mov sp, x1\n"
        "  ldp x19, x20, [sp, #0]\n"
        "  ldp x21, x22, [sp, #16]\n"
        "  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n"
        "  ldp x27, x28, [sp, #64]\n"
        "  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n"
        "  ldp d10, d11, [sp, #112]\n"
        "  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  add sp, sp, #160\n"
        "  ret\n"
        ".size rill__ctx_switch, .-rill__ctx_switch\n"
        ".globl rill__ctx_entry\n"
        ".hidden rill__ctx_entry\n"
        ".type rill__ctx_entry,%function\n"
        ".p2align 4\n"
        "rill__ctx_entry:\n"
        "  mov x0, x19\n"
        "  blr x20\n"
        "  brk #0\n"
        ".size rill__ctx_entry, .-rill__ctx_entry\n");
#endif

#endif
