/* src/arch/switch.h - the minimal context switch fibers use, chosen by architecture.
 *
 * rill__ctx_switch(&save, to) stores the current stack pointer in *save (after pushing the
 * callee-saved registers onto the current stack) and continues on the stack `to`, popping
 * that stack's registers.  It "returns" on the other stack: into whoever last switched
 * away from it, or, the first time, into the entry set up by rill__ctx_init.  Only the
 * registers the C ABI makes callee-saved are kept; the compiler saves everything else
 * around the call, which is why this is a few dozen instructions and never a syscall
 * (ucontext's swapcontext saves the signal mask with rt_sigprocmask on every switch).
 *
 * RILL__CTX_ASM is defined when this architecture has one; otherwise fiber.c uses
 * ucontext.  Building with -DRILL_FIBER_UCONTEXT forces ucontext everywhere.
 * The switch routine itself is top-level assembly emitted where RILL__CTX_DEFINE is set
 * (src/fiber.c only), so the symbol exists once; other files (bench/fiber_switch.c) may
 * include this header for the declarations. */
#ifndef RILL_ARCH_SWITCH_H
#define RILL_ARCH_SWITCH_H

#include <stddef.h>
#include <stdint.h>

#if !defined(RILL_FIBER_UCONTEXT) && defined(__x86_64__) && defined(__ELF__)
#define RILL__CTX_ASM "asm-x86_64"
#include "switch_x86_64.h"
#elif !defined(RILL_FIBER_UCONTEXT) && defined(__aarch64__) && defined(__ELF__)
#define RILL__CTX_ASM "asm-aarch64"
#include "switch_aarch64.h"
#endif

#ifdef RILL__CTX_ASM
/* Saves the current context into *save and resumes the one whose stack pointer is `to`. */
__attribute__((visibility("hidden"))) void rill__ctx_switch(void **save, void *to);
/* First code a new context runs: calls entry(arg) from the registers rill__ctx_init set. */
__attribute__((visibility("hidden"))) void rill__ctx_entry(void);
#endif

#endif
