using System.Buffers;

namespace Bastion.Protocols.Smtp;

/// <summary>What to do with a bare CR or bare LF inside message data (postfix's smtpd_forbid_bare_newline).</summary>
public enum BareNewlineMode : byte { Refuse, Normalize }

/// <summary>
/// What the two message paths share (<see cref="DataScanner"/> for DATA, <see cref="ChunkEncoder"/> for BDAT): the
/// bare-newline rule, the size limit, and the refusal that stops all further output once either is broken.
/// </summary>
public abstract class MessageFilter(BareNewlineMode mode, long maxSize)
{
    protected BareNewlineMode Mode { get; } = mode;
    protected bool Normalizing => Mode == BareNewlineMode.Normalize;

    /// <summary>Octets of the message so far, as the client meant them (without stuffing dots or the terminator).</summary>
    public abstract long Size { get; }

    /// <summary>Why the message is refused (bare newline: 554, size: 552); once set, nothing more is written.</summary>
    public string? Refusal { get; private set; }
    public int RefusalCode { get; private set; }
    public string RefusalEnhanced { get; private set; } = "";

    /// <summary>Bare CRs and LFs written as CRLF (normalize mode), for the log.</summary>
    public int Normalized { get; protected set; }

    protected void ResetCheck()
    {
        Refusal = null;
        RefusalCode = 0;
        RefusalEnhanced = "";
        Normalized = 0;
    }

    protected void CheckSize()
    {
        if (Refusal is null && Size > maxSize)
        {
            Refusal = $"message exceeds the maximum size of {maxSize} octets";
            RefusalCode = 552;
            RefusalEnhanced = "5.3.4";
        }
    }

    /// <summary>A bare CR or LF in refuse mode.</summary>
    protected void Refuse(string why)
    {
        if (Refusal is not null) return;
        Refusal = why;
        RefusalCode = 554;
        RefusalEnhanced = "5.6.0";
    }

    protected void Write(IBufferWriter<byte> output, ReadOnlySpan<byte> bytes)
    {
        if (Refusal is not null || bytes.IsEmpty) return;
        output.Write(bytes);
    }

    protected static ReadOnlySpan<byte> Dot => "."u8;
    protected static ReadOnlySpan<byte> Lf => "\n"u8;
    protected static ReadOnlySpan<byte> CrLf => "\r\n"u8;
}
