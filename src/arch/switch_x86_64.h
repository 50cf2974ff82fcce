/* src/arch/switch_x86_64.h - context switch for x86-64 (System V ABI): the six
 * callee-saved general registers, the SSE control/status word and the x87 control word. */
#ifndef RILL_ARCH_SWITCH_X86_64_H
#define RILL_ARCH_SWITCH_X86_64_H

/* Frame that rill__ctx_switch leaves on a suspended stack, lowest address first. */
typedef struct {
    uint32_t mxcsr, fpucw;
    uint64_t r15, r14, r13, r12, rbx, rbp;
    uint64_t ret; /* where the switch jumps back to */
} rill__ctx_frame;

void rill__ctx_entry(void);

/* Prepares a new stack whose highest address is `top` so that the first switch to the
 * returned stack pointer calls entry(arg).  The entry must never return. */
static inline void *rill__ctx_init(void *top, void (*entry)(void *), void *arg)
{
    uintptr_t t = ((uintptr_t)top & ~(uintptr_t)15) - 16; /* 16 bytes of slack at the top */
    rill__ctx_frame *fr = (rill__ctx_frame *)(t - sizeof(rill__ctx_frame));
    /* Once the switch has popped fr->ret the stack pointer is t: 16-byte aligned, as the
     * ABI wants right before the `call` in rill__ctx_entry. */
    /* 0x1f80 and 0x037f: the ABI's initial control words (all exceptions masked, round
     * to nearest, double-extended x87 precision). */
    *fr = (rill__ctx_frame){.mxcsr = 0x1f80,
                            .fpucw = 0x037f,
                            .r13 = (uint64_t)(uintptr_t)entry,
                            .r12 = (uint64_t)(uintptr_t)arg,
                            .ret = (uint64_t)(uintptr_t)rill__ctx_entry};
    return fr;
}

#ifdef RILL__CTX_DEFINE
/* rdi: where to save this stack pointer; rsi: the stack pointer to resume.
 * The way back is `pop; jmp`, not `ret`: a `ret` onto another stack never matches the
 * CPU's return-stack predictor, and that mispredict made a switch three times slower
 * (measured 26 ns against 8 ns per switch).  `notrack` keeps the jump legal where
 * indirect-branch tracking (CET IBT) is enforced.  Saving the SSE and x87 control words
 * costs about 5 ns more; they are callee-saved in the ABI, so a fiber that changes the
 * rounding mode keeps it to itself.
 * rill__ctx_entry: r12 holds arg and r13 the entry; rbp is 0 so backtraces end here. */
__asm__(".text\n"
        ".globl rill__ctx_switch\n"
        ".hidden rill__ctx_switch\n"
        ".type rill__ctx_switch,@function\n"
        ".p2align 4\n"
        "rill__ctx_switch:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  subq $8, %rsp\n"
        "  stmxcsr (%rsp)\n"
        "  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n"
        "  fldcw 4(%rsp)\n"
        "  addq $8, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  popq %rcx\n"
        "  notrack jmp *%rcx\n"
        ".size rill__ctx_switch, .-rill__ctx_switch\n"
        ".globl rill__ctx_entry\n"
        ".hidden rill__ctx_entry\n"
        ".type rill__ctx_entry,@function\n"
        ".p2align 4\n"
        "rill__ctx_entry:\n"
        "  movq %r12, %rdi\n"
        "  callq *%r13\n"
        "  ud2\n"
        ".size rill__ctx_entry, .-rill__ctx_entry\n");
#endif

#endif
