/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_csum.h - incremental Internet checksum updates (RFC 1624, eqn. 3):
 *   HC' = ~(~HC + ~m + m')
 * The reference model in tests/ performs the same arithmetic, so the exact
 * bits (including the 0x0000 / 0xffff choice) are part of the contract.
 */
#ifndef KW_CSUM_H
#define KW_CSUM_H

#include <linux/types.h>

static __always_inline __u16 kw_csum_fold(__u32 c)
{
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

/* A 16-bit field of the covered data changed from `from` to `to`. */
static __always_inline void kw_csum_replace2(__u16 *sum, __u16 from, __u16 to)
{
	__u32 c = (__u16)~*sum;

	c += (__u16)~from;
	c += to;
	*sum = kw_csum_fold(c);
}

/* A 32-bit field of the covered data changed from `from` to `to`. */
static __always_inline void kw_csum_replace4(__u16 *sum, __u32 from, __u32 to)
{
	__u32 nf = ~from;
	__u32 c = (__u16)~*sum;

	c += (nf & 0xffff) + (nf >> 16);
	c += (to & 0xffff) + (to >> 16);
	*sum = kw_csum_fold(c);
}

#endif /* KW_CSUM_H */
