using System.Buffers;

namespace Bastion.Protocols.Ftp;

public enum ReplyParse : byte { NeedMore, Complete, Malformed }

/// <summary>
/// One server reply, collected line by line (sans-I/O: the caller frames lines). Strict, because a reply that
/// does not parse is never relayed (the session answers 421 instead): the first line is `ddd SP text` or
/// `ddd-text` with a code of 1xx-5xx; a multi-line reply ends at the first line that starts with the same code
/// and a space (RFC 959 4.2). Bounded in lines and bytes. Reused per session: <see cref="Reset"/>.
/// </summary>
public sealed class FtpReply
{
    public const int DefaultMaxBytes = 64 * 1024;
    public const int DefaultMaxLines = 1000;

    readonly ArrayBufferWriter<byte> _raw = new(256);
    readonly int _maxBytes, _maxLines;
    int _firstLineEnd;
    int _lines;
    bool _done;

    public FtpReply(int maxBytes = DefaultMaxBytes, int maxLines = DefaultMaxLines)
    {
        _maxBytes = maxBytes;
        _maxLines = maxLines;
    }

    /// <summary>The reply code (0 until the first line is in).</summary>
    public int Code { get; private set; }
    public bool IsMultiline { get; private set; }
    public bool IsComplete => _done;
    public int LineCount => _lines;
    public string? Error { get; private set; }

    /// <summary>The reply as it goes on the wire: every line, each ended by CRLF.</summary>
    public ReadOnlyMemory<byte> Raw => _raw.WrittenMemory;

    /// <summary>The first line's text after `ddd ` or `ddd-`.</summary>
    public ReadOnlySpan<byte> FirstText => _firstLineEnd - 2 > 4 ? _raw.WrittenSpan[4..(_firstLineEnd - 2)] : default;

    public void Reset()
    {
        _raw.ResetWrittenCount();
        _firstLineEnd = 0;
        _lines = 0;
        _done = false;
        Code = 0;
        IsMultiline = false;
        Error = null;
    }

    /// <summary>Adds one line (without its line ending).</summary>
    public ReplyParse Feed(ReadOnlySpan<byte> line)
    {
        if (_done) return Fail("data after a complete reply");
        if (line.IndexOfAny((byte)0, (byte)'\r') >= 0) return Fail("NUL or CR inside a reply line");
        if (++_lines > _maxLines || _raw.WrittenCount + line.Length + 2 > _maxBytes) return Fail("reply too long");
        Append(line);
        if (_lines == 1)
        {
            _firstLineEnd = _raw.WrittenCount;
            if (line.Length < 3 || !IsCode(line)) return Fail("not an FTP reply (no reply code)");
            Code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
            if (line.Length == 3 || line[3] == (byte)' ') return Complete();
            if (line[3] != (byte)'-') return Fail("not an FTP reply (code not followed by space or '-')");
            IsMultiline = true;
            return ReplyParse.NeedMore;
        }
        // Intermediate lines are free text; the last starts with the same code and a space.
        if (line.Length >= 3 && line[0] - '0' == Code / 100 && line[1] - '0' == Code / 10 % 10 && line[2] - '0' == Code % 10
            && (line.Length == 3 || line[3] == (byte)' '))
            return Complete();
        return ReplyParse.NeedMore;
    }

    ReplyParse Complete()
    {
        _done = true;
        return ReplyParse.Complete;
    }

    ReplyParse Fail(string error)
    {
        Error = error;
        return ReplyParse.Malformed;
    }

    void Append(ReadOnlySpan<byte> line)
    {
        var dst = _raw.GetSpan(line.Length + 2);
        line.CopyTo(dst);
        dst[line.Length] = (byte)'\r';
        dst[line.Length + 1] = (byte)'\n';
        _raw.Advance(line.Length + 2);
    }

    static bool IsCode(ReadOnlySpan<byte> l) =>
        l[0] is >= (byte)'1' and <= (byte)'5' && l[1] is >= (byte)'0' and <= (byte)'5' && l[2] is >= (byte)'0' and <= (byte)'9';

    /// <summary>Each line of the reply without its CRLF, in order.</summary>
    public List<ReadOnlyMemory<byte>> Lines()
    {
        var list = new List<ReadOnlyMemory<byte>>(_lines);
        var mem = _raw.WrittenMemory;
        int start = 0;
        var span = mem.Span;
        for (int i = 0; i + 1 < span.Length; i++)
        {
            if (span[i] == (byte)'\r' && span[i + 1] == (byte)'\n')
            {
                list.Add(mem[start..i]);
                start = i + 2;
                i++;
            }
        }
        return list;
    }

    /// <summary>The reply's text for logs: the first line, without control bytes, bounded.</summary>
    public string Summary()
    {
        var first = _raw.WrittenSpan[..Math.Max(0, _firstLineEnd - 2)];
        if (first.Length > 200) first = first[..200];
        return System.Text.Encoding.UTF8.GetString(first);
    }
}
