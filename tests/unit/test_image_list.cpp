// Image folders and lists (data/image_list.h): torchvision ImageFolder's class and file order,
// both list dialects, and every bad input with its file and line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "facetrain/core/error.h"
#include "facetrain/data/image_list.h"

namespace fd = facetrain::data;
namespace fs = std::filesystem;

namespace {

class ImageListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("facetrain_image_list_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string touch(const std::string& rel, const std::string& content = "x") {
    fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
    return p.string();
  }
  // `path` without the temporary root (textually: links stay as they were found).
  std::string rel(const std::string& path) const {
    std::string prefix = root_.string() + "/";
    return path.rfind(prefix, 0) == 0 ? path.substr(prefix.size()) : path;
  }
  std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const facetrain::DataError& e) {
      return e.what();
    }
    return "no error";
  }
  fs::path root_;
};

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

}  // namespace

TEST_F(ImageListTest, FolderOrderIsTorchvisions) {
  touch("faces/2/b.jpg");
  touch("faces/2/a.JPG");  // extensions case-insensitive; 'A' (0x41) < 'a' and 'J' order by bytes
  touch("faces/10/z.png");
  touch("faces/10/notes.txt");  // not an image
  touch("faces/10/sub/y.webp");
  touch("faces/10/sub-x/w.jpeg");
  touch("faces/10/sub/deeper/v.jpg");  // folder paths sort as strings: "sub-x" < "sub/deeper" ('-' < '/')
  touch("faces/Ä/c.bmp");              // UTF-8 names sort by code point, after ASCII
  fs::create_directories(root_ / "faces/10/empty_sub");
  auto list = fd::scan_image_folder((root_ / "faces").string());
  EXPECT_EQ(list.class_names, (std::vector<std::string>{"10", "2", "Ä"})) << "\"10\" sorts before \"2\"";
  EXPECT_EQ(list.num_classes, 3);
  std::vector<std::string> got;
  for (const auto& e : list.entries) got.push_back(rel(e.path) + ":" + std::to_string(e.label));
  EXPECT_EQ(got, (std::vector<std::string>{"faces/10/z.png:0", "faces/10/sub/y.webp:0", "faces/10/sub-x/w.jpeg:0",
                                           "faces/10/sub/deeper/v.jpg:0", "faces/2/a.JPG:1", "faces/2/b.jpg:1",
                                           "faces/Ä/c.bmp:2"}));
}

TEST_F(ImageListTest, FolderFollowsLinksWithoutLooping) {
  touch("faces/a/1.jpg");
  touch("elsewhere/2.jpg");
  fs::create_directory_symlink(root_ / "elsewhere", root_ / "faces/a/linked");
  fs::create_directory_symlink(root_ / "faces/a", root_ / "faces/a/loop");  // a cycle
  auto list = fd::scan_image_folder((root_ / "faces").string());
  ASSERT_EQ(list.entries.size(), 2u);
  EXPECT_EQ(rel(list.entries[1].path), "faces/a/linked/2.jpg");
}

TEST_F(ImageListTest, FolderProblemsNameTheFolder) {
  EXPECT_TRUE(
      Contains(error_of([&] { fd::scan_image_folder((root_ / "missing").string()); }), "missing: not a folder"));
  fs::create_directories(root_ / "flat");
  touch("flat/a.jpg");
  EXPECT_TRUE(Contains(error_of([&] { fd::scan_image_folder((root_ / "flat").string()); }), "no class folders"));
  touch("two/a/1.jpg");
  touch("two/b/readme.txt");
  fs::create_directories(root_ / "two/c");
  std::string msg = error_of([&] { fd::scan_image_folder((root_ / "two").string()); });
  EXPECT_TRUE(Contains(msg, "2 class folder(s) hold no image (b, c)")) << msg;
}

TEST_F(ImageListTest, MxnetListsResolveRelativePaths) {
  std::string lst = touch("data/train.lst",
                          "0\t3.000000\timgs/a.jpg\n"
                          "1\t0.000000\t/abs/b.jpg\n"
                          "\n"
                          "7\t1\t5.5\timgs/c d.jpg\r\n");  // extra labels ignored; CRLF; spaces in names
  auto list = fd::read_image_list(lst);
  ASSERT_EQ(list.entries.size(), 3u);
  EXPECT_EQ(rel(list.entries[0].path), "data/imgs/a.jpg");
  EXPECT_EQ(list.entries[0].label, 3);
  EXPECT_EQ(list.entries[1].path, "/abs/b.jpg");
  EXPECT_EQ(rel(list.entries[2].path), "data/imgs/c d.jpg");
  EXPECT_EQ(list.entries[2].label, 1);
  EXPECT_EQ(list.num_classes, 4);
  EXPECT_FALSE(list.entries[0].face.has_value());
}

TEST_F(ImageListTest, InsightfaceListsKeepBoxAndLandmarks) {
  std::string lst = touch("train.lst",
                          "1\tx/0.jpg\t0\n"
                          "0\tx/1.jpg\t5\t10\t20\t110\t120\t30\t70\t50\t35\t65\t40\t41\t60\t80\t81\n");
  auto list = fd::read_image_list(lst);
  ASSERT_EQ(list.entries.size(), 2u);
  EXPECT_TRUE(list.entries[0].aligned);
  EXPECT_FALSE(list.entries[1].aligned);
  EXPECT_EQ(list.entries[1].label, 5);
  ASSERT_TRUE(list.entries[1].face.has_value());
  EXPECT_EQ(list.entries[1].face->bbox[2], 110.f);
  EXPECT_EQ(list.entries[1].face->landmarks[0], 30.f);
  EXPECT_EQ(list.entries[1].face->landmarks[9], 81.f);
  EXPECT_EQ(list.num_classes, 6);
}

TEST_F(ImageListTest, ListProblemsNameFileAndLine) {
  auto check = [&](const std::string& name, const std::string& content, const std::string& part) {
    std::string path = touch(name, content);
    std::string msg = error_of([&] { fd::read_image_list(path); });
    EXPECT_TRUE(Contains(msg, path)) << msg;
    EXPECT_TRUE(Contains(msg, part)) << msg;
  };
  check("neg.lst", "0\t1\ta.jpg\n1\t-2\tb.jpg\n", "line 2: the label must be a whole number >= 0, got '-2'");
  check("frac.lst", "0\t1.5\ta.jpg\n", "line 1: the label must be a whole number >= 0, got '1.5'");
  check("cols.lst", "0\ta.jpg\n", "line 1: expected 'index<TAB>label<TAB>path'");
  check("aligned.lst", "x\ta.jpg\t3\n", "line 1: expected 0 or 1 (aligned) first, got 'x'");
  check("index.lst", "a\t1\tb.jpg\n", "line 1: expected an integer index first, got 'a'");
  check("land.lst", "1\ta.jpg\t0\t1\t2\t3\t4\t5\t6\t7\t8\t9\t10\t11\t12\t13\tz\n", "column 17, got 'z'");
  check("empty.lst", "\n\n", "the list holds no images");
  std::string msg = error_of([&] { fd::read_image_list((root_ / "nope.lst").string()); });
  EXPECT_TRUE(Contains(msg, "nope.lst: cannot open the list file"));
}
