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
        var auth = new List<string>();
        for (int i = 1; i < reply.Lines.Count; i++)
        {
            var parts = reply.Lines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) continue;
            switch (parts[0].ToUpperInvariant())
            {
                case "PIPELINING": pipe = true; break;
                case "8BITMIME": eight = true; break;
                case "SMTPUTF8": utf8 = true; break;
                case "STARTTLS": tls = true; break;
                case "CHUNKING": chunk = true; break;
                case "ENHANCEDSTATUSCODES": enh = true; break;
                case "SIZE":
                    size = parts.Length > 1 && long.TryParse(parts[1], System.Globalization.NumberStyles.None, null, out var s) ? s : 0;
                    break;
                case "AUTH":
                    foreach (var m in parts.Skip(1)) auth.Add(m.ToUpperInvariant());
                    break;
            }
        }
        return new(pipe, size, eight, utf8, tls, chunk, enh, auth);
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
    public static readonly string[] Known = ["PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "STARTTLS", "ENHANCEDSTATUSCODES"];

    /// <summary>The default list when `extensions:` is not given.</summary>
    public static readonly string[] Default = ["PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS"];

    public readonly record struct Offer(bool Pipelining, bool Size, bool EightBitMime, bool SmtpUtf8, bool StartTls, bool Enhanced);

    /// <summary>What to advertise, given the allow-list, the server's offer and the session's state.</summary>
    public static Offer Decide(IReadOnlyCollection<string> allowed, ServerCapabilities server, bool tlsConfigured, bool tlsActive) => new(
        Pipelining: allowed.Contains("PIPELINING"),
        Size: allowed.Contains("SIZE"),
        EightBitMime: allowed.Contains("8BITMIME") && server.EightBitMime,
        SmtpUtf8: allowed.Contains("SMTPUTF8") && server.SmtpUtf8,
        StartTls: allowed.Contains("STARTTLS") && tlsConfigured && !tlsActive,
        Enhanced: allowed.Contains("ENHANCEDSTATUSCODES") && server.EnhancedStatusCodes);

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
        return lines;
    }
}
