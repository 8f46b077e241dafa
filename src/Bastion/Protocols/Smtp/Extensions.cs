using System.Text;

namespace Bastion.Protocols.Smtp;

/// <summary>What the server offered in its EHLO reply (the keywords the gateway cares about).</summary>
public sealed record ServerCapabilities(bool Pipelining, long Size, bool EightBitMime, bool SmtpUtf8, bool StartTls,
    bool Chunking, bool EnhancedStatusCodes, IReadOnlyList<string> AuthMechanisms)
{
    /// <summary>A server that answered HELO only, or whose EHLO offered nothing.</summary>
    public static readonly ServerCapabilities None = new(false, -1, false, false, false, false, false, []);

    /// <summary>Reads the keyword lines after the first (the server's name), case-insensitively.</summary>
    public static ServerCapabilities FromEhlo(SmtpReply reply)
    {
        bool pipe = false, eight = false, utf8 = false, tls = false, chunk = false, enh = false;
        long size = -1;
        List<string>? auth = null;
        for (int i = 1; i < reply.Lines.Count; i++)
        {
            // Keyword, then parameters separated by spaces (RFC 5321 4.1.1.1); compared ordinally, without splitting.
            var line = reply.Lines[i].AsSpan().TrimStart(' ');
            int sp = line.IndexOf(' ');
            var keyword = sp < 0 ? line : line[..sp];
            var rest = sp < 0 ? [] : line[(sp + 1)..];
            if (Ascii.EqualsIgnoreCase(keyword, "PIPELINING")) pipe = true;
            else if (Ascii.EqualsIgnoreCase(keyword, "8BITMIME")) eight = true;
            else if (Ascii.EqualsIgnoreCase(keyword, "SMTPUTF8")) utf8 = true;
            else if (Ascii.EqualsIgnoreCase(keyword, "STARTTLS")) tls = true;
            else if (Ascii.EqualsIgnoreCase(keyword, "CHUNKING")) chunk = true;
            else if (Ascii.EqualsIgnoreCase(keyword, "ENHANCEDSTATUSCODES")) enh = true;
            else if (Ascii.EqualsIgnoreCase(keyword, "SIZE"))
            {
                rest = rest.TrimStart(' ');
                int end = rest.IndexOf(' ');
                var value = end < 0 ? rest : rest[..end];
                size = value.Length > 0 && long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var s) ? s : 0;
            }
            else if (Ascii.EqualsIgnoreCase(keyword, "AUTH"))
            {
                foreach (var range in rest.Split(' '))
                    if (rest[range] is { Length: > 0 } m) (auth ??= []).Add(AsciiUpper(m));
            }
        }
        return new(pipe, size, eight, utf8, tls, chunk, enh, auth is null ? [] : auth);
    }

    // ASCII only: culture or Unicode folding would turn `ı` into `I`.
    static string AsciiUpper(ReadOnlySpan<char> s)
    {
        var c = s.ToArray();
        for (int i = 0; i < c.Length; i++) if (char.IsAsciiLetterLower(c[i])) c[i] = (char)(c[i] - 32);
        return new string(c);
    }
}

/// <summary>
/// The EHLO reply the client gets: the gateway's own name and only allow-listed extensions it can honour
/// (Zorp's EHLO trimming). PIPELINING, SIZE and STARTTLS are the gateway's own; 8BITMIME, SMTPUTF8 and
/// ENHANCEDSTATUSCODES need the server to have them too, since the gateway relays the data and the server's replies.
/// </summary>
public static class Extensions
{
    /// <summary>Every name `smtp.extensions` may list.</summary>
    public static readonly string[] Known = ["PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "STARTTLS", "ENHANCEDSTATUSCODES", "AUTH", "CHUNKING"];

    /// <summary>The default list when `extensions:` is not given (AUTH only with `authenticate: true`; CHUNKING only when listed).</summary>
    public static readonly string[] Default = ["PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS", "AUTH"];

    public readonly record struct Offer(bool Pipelining, bool Size, bool EightBitMime, bool SmtpUtf8, bool StartTls, bool Enhanced,
        bool Auth = false, bool Chunking = false);

    /// <summary>
    /// What to advertise, given the allow-list, the server's offer and the session's state. AUTH is the gateway's own
    /// (checked against its users, never relayed) and only over TLS unless configured; CHUNKING is the gateway's own
    /// too (BDAT is sent to the server as DATA).
    /// </summary>
    public static Offer Decide(IReadOnlyCollection<string> allowed, ServerCapabilities server, bool tlsConfigured, bool tlsActive,
        bool authenticate = false, bool authWithoutTls = false) => new(
        Pipelining: allowed.Contains("PIPELINING"),
        Size: allowed.Contains("SIZE"),
        EightBitMime: allowed.Contains("8BITMIME") && server.EightBitMime,
        SmtpUtf8: allowed.Contains("SMTPUTF8") && server.SmtpUtf8,
        StartTls: allowed.Contains("STARTTLS") && tlsConfigured && !tlsActive,
        Enhanced: allowed.Contains("ENHANCEDSTATUSCODES") && server.EnhancedStatusCodes,
        Auth: allowed.Contains("AUTH") && authenticate && (tlsActive || authWithoutTls),
        Chunking: allowed.Contains("CHUNKING"));

    /// <summary>The 250 reply lines: greeting first, then one keyword a line.</summary>
    public static List<string> EhloLines(string hostName, string clientName, Offer offer, long maxMessage)
    {
        var lines = new List<string> { $"{hostName} greets {clientName}" };
        if (offer.Pipelining) lines.Add("PIPELINING");
        if (offer.Size) lines.Add($"SIZE {maxMessage}");
        if (offer.EightBitMime) lines.Add("8BITMIME");
        if (offer.SmtpUtf8) lines.Add("SMTPUTF8");
        if (offer.StartTls) lines.Add("STARTTLS");
        if (offer.Enhanced) lines.Add("ENHANCEDSTATUSCODES");
        if (offer.Auth) lines.Add("AUTH PLAIN LOGIN");
        if (offer.Chunking) lines.Add("CHUNKING");
        return lines;
    }
}
