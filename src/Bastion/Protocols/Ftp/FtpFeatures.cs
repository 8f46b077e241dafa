using System.Text;

namespace Bastion.Protocols.Ftp;

/// <summary>
/// FEAT (RFC 2389) through the gateway: the server's list filtered to what the gateway relays faithfully, plus
/// what the gateway does itself (EPRT, EPSV, PASV on the client side; AUTH TLS, PBSZ, PROT with a certificate).
/// A server feature the gateway would have to understand to relay (MODE Z, HOST, XCRC...) is dropped.
/// </summary>
public static class FtpFeatures
{
    /// <summary>Server features kept (matched on the feature's first word, case-insensitively).</summary>
    static readonly HashSet<string> Relayed = new(StringComparer.OrdinalIgnoreCase)
    {
        "MDTM", "MFMT", "MLST", "REST", "SIZE", "TVFS", "UTF8",
    };

    /// <summary>Features the gateway itself provides, in the order it lists them.</summary>
    static IEnumerable<string> Own(bool clientTls)
    {
        yield return "EPRT";
        yield return "EPSV";
        yield return "PASV";
        if (clientTls)
        {
            yield return "AUTH TLS";
            yield return "PBSZ";
            yield return "PROT";
        }
    }

    /// <summary>
    /// The 211 reply for the client. <paramref name="serverReply"/> is the server's complete FEAT reply, or null when
    /// there is no server yet or it has no FEAT (then only the gateway's own features are listed).
    /// </summary>
    public static byte[] Reply(FtpReply? serverReply, bool clientTls)
    {
        var sb = new StringBuilder("211-Features:\r\n");
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        if (serverReply is { Code: 211, IsMultiline: true })
        {
            var lines = serverReply.Lines();
            for (int i = 1; i < lines.Count - 1; i++)
            {
                var line = lines[i].Span;
                // Feature lines start with one space (RFC 2389 3.2); anything else is commentary.
                if (line.Length < 2 || line[0] != (byte)' ' || line[1] == (byte)' ') continue;
                var feature = Encoding.UTF8.GetString(line[1..]).TrimEnd(' ');
                int sp = feature.IndexOf(' ');
                var name = sp < 0 ? feature : feature[..sp];
                if (!Relayed.Contains(name)) continue;
                // REST is relayed only as REST STREAM (the only restart the gateway's stream mode supports).
                if (name.Equals("REST", StringComparison.OrdinalIgnoreCase) && !feature.Equals("REST STREAM", StringComparison.OrdinalIgnoreCase)) continue;
                if (!seen.Add(name)) continue;
                sb.Append(' ').Append(feature).Append("\r\n");
            }
        }
        foreach (var f in Own(clientTls))
            if (seen.Add(f.Split(' ')[0])) sb.Append(' ').Append(f).Append("\r\n");
        sb.Append("211 End\r\n");
        return Encoding.UTF8.GetBytes(sb.ToString());
    }
}
