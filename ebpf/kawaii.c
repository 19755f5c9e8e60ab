// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* kawaii.c - SKELETON, being written: entry points and maps only. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kw_maps.h"

static __always_inline int kawaii(struct xdp_md *ctx, int role)
{
	__u32 k = 0;
	__u32 *a = bpf_map_lookup_elem(&kw_active, &k);
	if (!a)
		return XDP_PASS;
	return XDP_PASS;
}

SEC("xdp")
int kawaii_public(struct xdp_md *ctx) { return kawaii(ctx, KW_ROLE_PUBLIC); }
SEC("xdp")
int kawaii_private(struct xdp_md *ctx) { return kawaii(ctx, KW_ROLE_PRIVATE); }
SEC("xdp")
int kawaii_peering(struct xdp_md *ctx) { return kawaii(ctx, KW_ROLE_PEERING); }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
