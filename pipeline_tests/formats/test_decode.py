"""Decompression, charsets and header lines of a byte stream."""

from __future__ import annotations

import bz2
import gzip
import zlib

import pytest

from pipeline.formats.decode import compression, decompress, python_codec, split_header, to_utf8


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[index:index + size] for index in range(0, len(data), size)]


BOOK_ORDER = "order_id,book_name\r\n1,嫌われる勇気\r\n2,ノルウェイの森\r\n".encode()


# -- decompress ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 7, 1 << 16])
def test_gzip_content_is_decompressed_whatever_the_chunk_size(size: int) -> None:
    assert b"".join(decompress(pieces(gzip.compress(BOOK_ORDER), size))) == BOOK_ORDER


def test_concatenated_gzip_members_are_all_decompressed() -> None:
    data = gzip.compress(b"a,b\n") + gzip.compress(b"c,d\n") + gzip.compress(b"e,f\n")
    assert b"".join(decompress(pieces(data, 5))) == b"a,b\nc,d\ne,f\n"


def test_zero_padding_after_a_gzip_member_is_ignored() -> None:
    assert b"".join(decompress([gzip.compress(b"a\n") + b"\0" * 100])) == b"a\n"


@pytest.mark.parametrize("size", [1, 3, 1 << 16])
def test_bzip2_content_is_decompressed(size: int) -> None:
    assert b"".join(decompress(pieces(bz2.compress(BOOK_ORDER), size))) == BOOK_ORDER


def test_concatenated_bzip2_streams_are_all_decompressed() -> None:
    data = bz2.compress(b"a\n") + bz2.compress(b"b\n")
    assert b"".join(decompress(pieces(data, 4))) == b"a\nb\n"


def test_plain_content_passes_through_untouched_even_if_it_starts_like_bzip2() -> None:
    data = b"BZh,name\n1,x\n"
    assert b"".join(decompress(pieces(data, 2))) == data


def test_empty_input_gives_nothing() -> None:
    assert list(decompress([])) == []


def test_decompressed_output_comes_in_bounded_pieces() -> None:
    zeros = bytes(5 * (1 << 20))
    output = list(decompress([gzip.compress(zeros)]))
    assert b"".join(output) == zeros
    assert max(map(len, output)) <= 1 << 20


def test_corrupt_gzip_raises_a_value_error_with_the_reason() -> None:
    data = bytearray(gzip.compress(BOOK_ORDER * 10))
    data[20:30] = b"\xff" * 10
    with pytest.raises(ValueError, match="corrupt gzip data"):
        b"".join(decompress([bytes(data)]))


def test_truncated_gzip_raises_a_value_error() -> None:
    data = gzip.compress(BOOK_ORDER)
    with pytest.raises(ValueError, match="truncated"):
        b"".join(decompress([data[:-12]]))


def test_garbage_after_a_gzip_member_raises() -> None:
    with pytest.raises(ValueError, match="corrupt gzip"):
        b"".join(decompress([gzip.compress(b"a\n") + b"not gzip"]))


def test_truncated_bzip2_raises_a_value_error() -> None:
    data = bz2.compress(BOOK_ORDER)
    with pytest.raises(ValueError, match="truncated"):
        b"".join(decompress([data[:-10]]))


def test_zlib_wrapped_content_is_not_taken_for_gzip() -> None:
    data = zlib.compress(b"a,b\n")
    assert b"".join(decompress([data])) == data


def zstd(data: bytes) -> bytes:
    import pyarrow as pa

    return pa.Codec("zstd").compress(data, asbytes=True)


@pytest.mark.parametrize("size", [1, 5, 1 << 16])
def test_zstd_content_is_decompressed_whatever_the_chunk_size(size: int) -> None:
    assert b"".join(decompress(pieces(zstd(BOOK_ORDER), size))) == BOOK_ORDER


def test_concatenated_zstd_frames_are_all_decompressed() -> None:
    assert b"".join(decompress(pieces(zstd(b"a\n") + zstd(b"b\n") + zstd(b"c\n"), 3))) == b"a\nb\nc\n"


def test_zstd_output_comes_in_bounded_pieces() -> None:
    zeros = bytes(5 * (1 << 20))
    output = list(decompress([zstd(zeros)]))
    assert b"".join(output) == zeros and max(map(len, output)) <= 1 << 20


def test_truncated_zstd_raises_a_value_error() -> None:
    with pytest.raises(ValueError, match="corrupt zstd data: the stream ends inside a frame"):
        b"".join(decompress([zstd(BOOK_ORDER * 20)[:-6]]))


def test_an_error_reading_the_chunks_of_zstd_content_is_raised_as_it_was() -> None:
    def chunks():
        yield zstd(BOOK_ORDER * 1000)[:50]
        raise ConnectionResetError("s3://bucket/key: connection reset")

    with pytest.raises(ConnectionResetError, match="s3://bucket/key"):
        b"".join(decompress(chunks()))


def test_compression_is_named_by_the_first_bytes() -> None:
    assert [compression(data[:10]) for data in (gzip.compress(b"a"), bz2.compress(b"a"), zstd(b"a"), b"a,b\n")] \
        == ["gzip", "bzip2", "zstd", None]


# -- charsets -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("charset", "codec"),
    [("UTF-8", "utf-8"), ("utf8", "utf-8"), ("MS932", "cp932"), ("Windows-31J", "cp932"),
     ("Shift_JIS", "cp932"), ("CP932", "cp932"), ("EUC-JP", "euc_jp"), ("ISO-8859-1", "latin-1"),
     ("UTF-16", "utf-16"), ("UTF-16LE", "utf-16-le"), ("windows-1252", "cp1252")],
)
def test_embulk_charset_names_map_to_python_codecs(charset: str, codec: str) -> None:
    assert python_codec(charset) == codec


def test_shift_jis_reads_the_windows_extensions_real_files_contain() -> None:
    # ① and ㈱ are NEC extensions: strict Shift_JIS cannot decode them, MS932 can.
    data = "①㈱髙".encode("cp932")
    assert b"".join(to_utf8([data], "Shift_JIS")).decode() == "①㈱髙"


def test_unknown_charset_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown charset 'KOI9'"):
        python_codec("KOI9")


def test_utf8_passes_through_without_being_decoded() -> None:
    # Invalid UTF-8 is left for the server to reject: no decoding happens on this path.
    data = [b"a,\xff\n", b"b,c\n"]
    assert list(to_utf8(data, "UTF-8")) == data


def test_utf8_byte_order_mark_is_stripped_even_when_split_across_chunks() -> None:
    assert b"".join(to_utf8([b"\xef", b"\xbb", b"\xbfa,b\n"], "UTF-8")) == b"a,b\n"


def test_a_byte_order_mark_later_in_the_stream_is_data() -> None:
    assert b"".join(to_utf8([b"a\n\xef\xbb\xbfb\n"], "UTF-8")) == b"a\n\xef\xbb\xbfb\n"


@pytest.mark.parametrize("charset,codec", [("MS932", "cp932"), ("EUC-JP", "euc_jp"), ("UTF-16", "utf-16")])
def test_other_charsets_are_transcoded_to_utf8_across_chunk_boundaries(charset: str, codec: str) -> None:
    text = BOOK_ORDER.decode()
    assert b"".join(to_utf8(pieces(text.encode(codec), 3), charset)) == BOOK_ORDER


def test_utf16_little_endian_with_bom_drops_the_bom() -> None:
    data = "\ufeffa,b\n".encode("utf-16-le")
    assert b"".join(to_utf8([data], "UTF-16LE")) == b"a,b\n"


def test_a_decode_error_names_the_byte_offset_in_the_whole_stream() -> None:
    good = "嫌われる勇気\n".encode("cp932")  # 13 bytes
    data = good + b"ab\x81\x20cd"  # 0x81 0x20 is not a cp932 character; it starts at offset 15
    with pytest.raises(ValueError, match="offset 15 are not valid MS932"):
        b"".join(to_utf8(pieces(data, 4), "MS932"))


def test_a_character_cut_off_at_the_end_is_a_decode_error() -> None:
    with pytest.raises(ValueError, match="offset 2 are not valid EUC-JP"):
        b"".join(to_utf8([b"ab\xa4"], "EUC-JP"))


# -- header lines -------------------------------------------------------------------------------

@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_split_header_takes_the_first_lines_with_their_line_endings(newline: bytes) -> None:
    data = newline.join([b"title", b"id,name", b"1,a", b"2,b"]) + newline
    header, rest = split_header(pieces(data, 3), 2)
    assert header == [b"title" + newline, b"id,name" + newline]
    assert b"".join(rest) == b"1,a" + newline + b"2,b" + newline


def test_split_header_keeps_a_crlf_whole_across_chunks() -> None:
    header, rest = split_header([b"id\r", b"\n1\r\n"], 1)
    assert header == [b"id\r\n"]
    assert b"".join(rest) == b"1\r\n"


def test_split_header_with_mixed_line_endings() -> None:
    header, rest = split_header([b"a\rb\nc\r\nd"], 3)
    assert header == [b"a\r", b"b\n", b"c\r\n"]
    assert b"".join(rest) == b"d"


def test_split_header_on_a_stream_shorter_than_the_header() -> None:
    header, rest = split_header([b"only line"], 3)
    assert header == [b"only line"]
    assert b"".join(rest) == b""


def test_split_header_of_zero_lines_reads_nothing() -> None:
    header, rest = split_header([b"a\n"], 0)
    assert header == []
    assert b"".join(rest) == b"a\n"


def test_split_header_does_not_read_the_whole_stream() -> None:
    read: list[int] = []

    def chunks():
        for index in range(1000):
            read.append(index)
            yield b"line %d\n" % index

    header, rest = split_header(chunks(), 2)
    assert header == [b"line 0\n", b"line 1\n"]
    assert len(read) == 2
    assert next(iter(rest)) == b"line 2\n"


def test_decompress_reads_nothing_until_iterated() -> None:
    read: list[int] = []

    def chunks():
        read.append(1)
        yield b"a\n"

    stream = decompress(chunks())
    assert read == []
    assert list(stream) == [b"a\n"]
