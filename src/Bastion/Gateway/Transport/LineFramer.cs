using System.Buffers;

namespace Bastion.Gateway;

/// <summary>What <see cref="LineFramer.TryFrame"/> (and <see cref="LineReader"/>) found.</summary>
public enum LineStatus
{
    /// <summary>No complete line yet: read more.</summary>
    NeedMore,
    /// <summary>One line, without its terminator.</summary>
    Line,
    /// <summary>More than maxLine bytes without a line end: refuse it, then discard up to the next LF.</summary>
    TooLong,
    /// <summary>(LineReader only) the peer closed; a partial last line without LF is dropped.</summary>
    End,
}

/// <summary>How a line was terminated, for protocols that must refuse sloppy line ends (SMTP smuggling).</summary>
[Flags]
public enum LineFlags
{
    None = 0,
    /// <summary>Ended by LF without CR before it.</summary>
    BareLf = 1,
    /// <summary>A CR inside the line that is not followed by LF.</summary>
    BareCr = 2,
}

/// <summary>
/// Line framing for line protocols (FTP, SMTP), sans I/O: looks at whatever has arrived and says need-more, a line
/// (CRLF or bare LF ended; the flags say which), or too long. Never throws on input, never allocates.
/// </summary>
public static class LineFramer
{
    /// <param name="buffer">Bytes received and not yet consumed.</param>
    /// <param name="maxLine">Longest line accepted, terminator excluded.</param>
    /// <param name="consumed">Past the line's LF when a line is returned; the buffer's start otherwise.</param>
    /// <param name="line">The line without CRLF/LF (a slice of <paramref name="buffer"/>).</param>
    /// <param name="flags">Bare LF or bare CR seen.</param>
    public static LineStatus TryFrame(in ReadOnlySequence<byte> buffer, int maxLine, out SequencePosition consumed,
        out ReadOnlySequence<byte> line, out LineFlags flags)
    {
        consumed = buffer.Start;
        line = default;
        flags = LineFlags.None;
        if (maxLine < 0) maxLine = 0;
        // A valid line is at most maxLine bytes, a CR and the LF.
        long window = Math.Min(buffer.Length, (long)maxLine + 2);
        var lf = buffer.Slice(0, window).PositionOf((byte)'\n');
        if (lf is not { } lfPos)
            return buffer.Length > maxLine + 1 || (buffer.Length == maxLine + 1 && Last(buffer) != '\r')
                ? LineStatus.TooLong : LineStatus.NeedMore;
        var content = buffer.Slice(0, lfPos);
        if (content.Length > 0 && Last(content) == '\r') content = content.Slice(0, content.Length - 1);
        else flags |= LineFlags.BareLf;
        if (content.Length > maxLine) return LineStatus.TooLong;
        if (Contains(content, (byte)'\r')) flags |= LineFlags.BareCr;
        line = content;
        consumed = buffer.GetPosition(1, lfPos);
        return LineStatus.Line;
    }

    /// <summary>
    /// Discards up to and including the next LF (the rest of a line that was too long). True with
    /// <paramref name="consumed"/> past the LF when found; false with everything consumed when not yet.
    /// </summary>
    public static bool TrySkipLine(in ReadOnlySequence<byte> buffer, out SequencePosition consumed)
    {
        if (buffer.PositionOf((byte)'\n') is { } lf)
        {
            consumed = buffer.GetPosition(1, lf);
            return true;
        }
        consumed = buffer.End;
        return false;
    }

    static byte Last(in ReadOnlySequence<byte> s)
    {
        if (s.IsSingleSegment) return s.FirstSpan[^1];
        byte last = 0;
        foreach (var m in s)
            if (!m.IsEmpty) last = m.Span[^1];
        return last;
    }

    static bool Contains(in ReadOnlySequence<byte> s, byte b)
    {
        if (s.IsSingleSegment) return s.FirstSpan.Contains(b);
        foreach (var m in s)
            if (m.Span.Contains(b)) return true;
        return false;
    }
}
