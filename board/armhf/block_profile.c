/* A QEMU TCG plugin that profiles guest basic blocks and simulates the caches, for the cycle model
 * of the ARM stages (board/arm_cycles.py). Declares the plugin-API entry points it uses, as
 * insn_count.c does (Debian ships qemu-user with plugin support but no qemu-plugin.h).
 *
 * Blocks: every translated block is keyed by its first address and length; each execution adds 1
 * to its counter (inline, so exact and cheap). At exit, out=PATH gets one line per executed block:
 * count, its L1 misses (data and instruction; 0 without caches=), address, and the block's
 * instructions as qemu disassembles them, separated by ';' (the model feeds them to llvm-mca). A block qemu translates again (after a cache flush) keeps its counter.
 *
 * Caches (caches=LINE:L1D_BYTES:L1D_WAYS:L1I_BYTES:L1I_WAYS:L2_BYTES:L2_WAYS, from the board's
 * board.json): one core's L1 data and instruction caches and the L2 behind them, LRU replacement,
 * write-allocate. Virtual addresses stand in for physical ones. Data accesses come from memory
 * callbacks, instruction fetches from each executed block's byte range. A miss whose line follows
 * one of the last STREAMS lines that missed at the same level is "sequential": the kind a hardware
 * prefetcher fetches ahead of use (the model prices those by bandwidth, the others by latency). The
 * counts go to the first line of out=PATH: "cache l1d_accesses l1d_misses l1i_misses l2_misses
 * l2_hits_random l2_misses_sequential" (l2_hits_random: L1 misses served by L2, not sequential).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
typedef uint32_t qemu_plugin_meminfo_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                                          uint64_t vaddr, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                      void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;

struct block {
    uint64_t vaddr, count, l1_misses;
    size_t n, bytes;
    char *text;  /* the instructions, ';'-separated */
    struct block *next;
};

#define BUCKETS 65536
static struct block *table[BUCKETS];
static char out_path[4096];
static bool caches;

/* ---- caches ---- */
static int line_bits;
struct cache {
    int sets, ways;
    uint64_t *tag;   /* sets * ways, 0 = empty (tags are stored + 1) */
    uint64_t *used;  /* last use, for LRU */
    uint64_t clock, misses;
};
static struct cache l1d, l1i, l2;
static uint64_t l1d_accesses;

static void cache_init(struct cache *c, int bytes, int ways)
{
    c->ways = ways;
    c->sets = (bytes >> line_bits) / ways;
    c->tag = calloc((size_t)c->sets * ways, sizeof *c->tag);
    c->used = calloc((size_t)c->sets * ways, sizeof *c->used);
}

/* true on a hit; on a miss the line is brought in over the least recently used way */
static bool cache_access(struct cache *c, uint64_t line)
{
    const size_t set = (size_t)(line % (uint64_t)c->sets) * c->ways;
    size_t victim = set;
    c->clock++;
    for (size_t w = set; w < set + c->ways; w++) {
        if (c->tag[w] == line + 1) {
            c->used[w] = c->clock;
            return true;
        }
        if (c->used[w] < c->used[victim])
            victim = w;
    }
    c->misses++;
    c->tag[victim] = line + 1;
    c->used[victim] = c->clock;
    return false;
}

/* The last STREAMS lines that missed at one level, to tell sequential misses from the others. */
#define STREAMS 16
struct recent {
    uint64_t line[STREAMS];
    unsigned next;
};
static struct recent l1_recent, l2_recent;
static uint64_t l2_hits_random, l2_misses_sequential;

static bool follows_recent(struct recent *r, uint64_t line)
{
    bool seq = false;
    for (int i = 0; i < STREAMS; i++)
        seq |= r->line[i] + 1 == line;
    r->line[r->next++ % STREAMS] = line;
    return seq;
}

/* true on an L1 miss */
static bool access_line(struct cache *l1, uint64_t line)
{
    if (cache_access(l1, line))
        return false;
    const bool seq = follows_recent(&l1_recent, line);
    if (cache_access(&l2, line))
        l2_hits_random += !seq;
    else
        l2_misses_sequential += follows_recent(&l2_recent, line);
    return true;
}

static void on_memory(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    (void)vcpu, (void)info;
    l1d_accesses++;
    if (access_line(&l1d, vaddr >> line_bits))
        ((struct block *)udata)->l1_misses++;
}

static void on_block(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    struct block *b = udata;
    for (uint64_t line = b->vaddr >> line_bits; line <= (b->vaddr + b->bytes - 1) >> line_bits; line++)
        b->l1_misses += access_line(&l1i, line);
}

/* ---- blocks ---- */
static struct block *block_for(const struct qemu_plugin_tb *tb)
{
    const uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
    const size_t n = qemu_plugin_tb_n_insns(tb);
    struct block **slot = &table[(vaddr >> 1) % BUCKETS];
    for (struct block *b = *slot; b; b = b->next)
        if (b->vaddr == vaddr && b->n == n)
            return b;
    struct block *b = calloc(1, sizeof *b);
    size_t len = 0, cap = 64;
    b->text = malloc(cap);
    b->text[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        char *d = qemu_plugin_insn_disas(insn);
        const size_t dl = strlen(d);
        while (len + dl + 2 > cap)
            b->text = realloc(b->text, cap *= 2);
        if (i)
            b->text[len++] = ';';
        memcpy(b->text + len, d, dl + 1);
        len += dl;
        b->bytes += qemu_plugin_insn_size(insn);
        free(d);
    }
    b->vaddr = vaddr;
    b->n = n;
    b->next = *slot;
    *slot = b;
    return b;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    struct block *b = block_for(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->count, 1);
    if (!caches)
        return;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
    for (size_t i = 0; i < b->n; i++)
        qemu_plugin_register_vcpu_mem_cb(qemu_plugin_tb_get_insn(tb, i), on_memory, QEMU_PLUGIN_CB_NO_REGS,
                                         QEMU_PLUGIN_MEM_RW, b);
}

static void write_profile(qemu_plugin_id_t id, void *userdata)
{
    (void)id, (void)userdata;
    FILE *f = fopen(out_path, "w");
    if (!f)
        return;
    fprintf(f, "cache %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", l1d_accesses,
            l1d.misses, l1i.misses, l2.misses, l2_hits_random, l2_misses_sequential);
    for (size_t i = 0; i < BUCKETS; i++)
        for (const struct block *b = table[i]; b; b = b->next)
            if (b->count)
                fprintf(f, "%" PRIu64 "\t%" PRIu64 "\t%" PRIx64 "\t%s\n", b->count, b->l1_misses, b->vaddr, b->text);
    fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0)
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        else if (strncmp(argv[i], "caches=", 7) == 0) {
            int line, d, dw, in, iw, l2b, l2w;
            if (sscanf(argv[i] + 7, "%d:%d:%d:%d:%d:%d:%d", &line, &d, &dw, &in, &iw, &l2b, &l2w) != 7 || line < 4
                || (line & (line - 1)) || dw < 1 || iw < 1 || l2w < 1 || d < line * dw || in < line * iw || l2b < line * l2w)
                return 1;
            line_bits = __builtin_ctz((unsigned)line);
            cache_init(&l1d, d, dw);
            cache_init(&l1i, in, iw);
            cache_init(&l2, l2b, l2w);
            caches = true;
        }
    }
    if (!out_path[0])
        return 1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_profile, NULL);
    return 0;
}
