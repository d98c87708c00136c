//! Where things are in a RISORS dataset folder.

/// Folder of the images.
pub const IMAGE_DIR: &str = "JPEGImages";
/// Folder of the annotation files.
pub const ANNOTATION_DIR: &str = "Annotations";

/// The split list's file name: `RISORS_{split}.txt`.
pub fn split_list_file(split: &str) -> String {
    format!("RISORS_{split}.txt")
}
