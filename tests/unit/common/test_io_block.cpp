// Unit tests for common/io_block: refcounted blocks and their pool.
#include <doctest/doctest.h>

#include <cstring>
#include <utility>
#include <vector>

#include "common/io_block.hpp"

using torii::BlockRef;
using torii::IoBlock;
using torii::IoBlockPool;

TEST_SUITE("io_block") {
  TEST_CASE("an empty BlockRef") {
    BlockRef r;
    CHECK_FALSE(r);
    CHECK(r.get() == nullptr);
    CHECK_FALSE(r.unique());
    r.reset();  // no-op
    CHECK_FALSE(r);
  }

  TEST_CASE("acquire gives a unique, writable block of kSize bytes") {
    IoBlockPool pool;
    BlockRef r = pool.acquire();
    REQUIRE(r);
    CHECK(r.unique());
    CHECK(r->capacity() == IoBlock::kSize);
    CHECK(IoBlock::kSize == 16 * 1024);
    CHECK(pool.allocated() == 1);
    CHECK(pool.free_count() == 0);
    std::memset(r->data(), 'x', r->capacity());
    const IoBlock& cb = *r.get();
    CHECK(cb.data()[0] == 'x');
    CHECK(cb.data()[IoBlock::kSize - 1] == 'x');
  }

  TEST_CASE("copies share the block; the last reference returns it to the pool") {
    IoBlockPool pool;
    BlockRef a = pool.acquire();
    IoBlock* block = a.get();
    {
      BlockRef b = a;  // copy
      CHECK(b.get() == block);
      CHECK_FALSE(a.unique());
      CHECK_FALSE(b.unique());
      BlockRef c;
      c = b;  // copy assignment
      CHECK(c.get() == block);
      CHECK(pool.free_count() == 0);
    }
    CHECK(a.unique());
    CHECK(pool.free_count() == 0);
    a.reset();
    CHECK_FALSE(a);
    CHECK(pool.free_count() == 1);
    CHECK(pool.allocated() == 1);
  }

  TEST_CASE("moves transfer the reference without touching the count") {
    IoBlockPool pool;
    BlockRef a = pool.acquire();
    IoBlock* block = a.get();
    BlockRef b = std::move(a);
    CHECK(b.get() == block);
    CHECK(b.unique());
    CHECK_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    BlockRef c;
    c = std::move(b);
    CHECK(c.get() == block);
    CHECK(c.unique());
    CHECK(pool.free_count() == 0);
    c.reset();
    CHECK(pool.free_count() == 1);
  }

  TEST_CASE("assigning over a reference releases the old block") {
    IoBlockPool pool;
    BlockRef a = pool.acquire();
    BlockRef b = pool.acquire();
    IoBlock* second = b.get();
    CHECK(pool.allocated() == 2);
    a = b;
    CHECK(a.get() == second);
    CHECK(pool.free_count() == 1);
    BlockRef& alias = a;
    a = alias;  // self-assignment keeps the block
    CHECK(a.get() == second);
    CHECK_FALSE(a.unique());
    CHECK(pool.free_count() == 1);
  }

  TEST_CASE("released blocks are reused before new ones are allocated") {
    IoBlockPool pool;
    BlockRef a = pool.acquire();
    IoBlock* first = a.get();
    a.reset();
    BlockRef b = pool.acquire();
    CHECK(b.get() == first);
    CHECK(pool.allocated() == 1);
    CHECK(pool.free_count() == 0);
    BlockRef c = pool.acquire();
    CHECK(c.get() != first);
    CHECK(pool.allocated() == 2);
  }

  TEST_CASE("the pool keeps at most max_free blocks") {
    IoBlockPool pool(2);
    std::vector<BlockRef> refs;
    for (int i = 0; i < 5; ++i) refs.push_back(pool.acquire());
    CHECK(pool.allocated() == 5);
    refs.clear();
    CHECK(pool.free_count() == 2);
    CHECK(pool.allocated() == 2);
    // Reuse the two, then allocate.
    BlockRef a = pool.acquire();
    BlockRef b = pool.acquire();
    CHECK(pool.free_count() == 0);
    CHECK(pool.allocated() == 2);
    BlockRef c = pool.acquire();
    CHECK(pool.allocated() == 3);
  }

  TEST_CASE("a pool with max_free 0 frees every released block") {
    IoBlockPool pool(0);
    BlockRef a = pool.acquire();
    a.reset();
    CHECK(pool.free_count() == 0);
    CHECK(pool.allocated() == 0);
  }

  TEST_CASE("many references to one block") {
    IoBlockPool pool;
    BlockRef a = pool.acquire();
    std::vector<BlockRef> copies(1000, a);
    CHECK_FALSE(a.unique());
    copies.clear();
    CHECK(a.unique());
    CHECK(pool.free_count() == 0);
  }

}  // TEST_SUITE
