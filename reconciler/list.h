/* SPDX-License-Identifier: MIT */
#pragma once

#include <assert.h>
#include <stddef.h>

#include "macro.h"

/*
 * Intrusive doubly-linked lists: the node lives inside the element (a Sandbox has one per
 * queue it can wait in), so that appending, taking the first and leaving from anywhere
 * are O(1) and allocate nothing. A zeroed List is empty and a zeroed ListNode is in no
 * list: calloc'd structs need no set-up. A node is in at most one list at a time.
 */

typedef struct ListNode {
	struct ListNode *prev, *next;
} ListNode;

typedef struct List {
	ListNode *first, *last;
	size_t size;
} List;

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* The element a node is in, or NULL for no node. */
#define list_entry(node, type, member)                                                             \
	({                                                                                         \
		ListNode *_n_ = (node);                                                            \
		_n_ ? container_of(_n_, type, member) : NULL;                                      \
	})

static inline bool list_contains(const List *l, const ListNode *n)
{
	return n->prev || l->first == n;
}

static inline void list_append(List *l, ListNode *n)
{
	assert(!list_contains(l, n));
	n->prev = l->last;
	n->next = NULL;
	if (l->last)
		l->last->next = n;
	else
		l->first = n;
	l->last = n;
	l->size++;
}

/* Take n out of l; nothing if it is not there. */
static inline void list_remove(List *l, ListNode *n)
{
	if (!list_contains(l, n))
		return;
	if (n->prev)
		n->prev->next = n->next;
	else
		l->first = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		l->last = n->prev;
	*n = (ListNode){};
	l->size--;
}

/* Take the first node out of l and return it; NULL if l is empty. */
static inline ListNode *list_pop_first(List *l)
{
	ListNode *n = l->first;

	if (n)
		list_remove(l, n);
	return n;
}
