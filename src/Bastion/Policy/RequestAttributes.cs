using System.Net;

namespace Bastion.Policy;

/// <summary>Looks up request headers without copying them; each HTTP front end adapts its own header store.</summary>
public interface IHeaderSource
{
    /// <summary>The header's value (several values joined by ", "), or null when absent.</summary>
    string? Get(string name);

    /// <summary>
    /// The <paramref name="index"/>-th field line of the header (0-based, in order received); false past the last.
    /// Header conditions judge every line, so that a second line cannot dilute a deny (SPEC 2.1).
    /// </summary>
    bool TryGetLine(string name, int index, out string value)
    {
        // Sources that cannot tell lines apart offer their joined value as one line (its comma elements are still judged).
        value = index == 0 ? Get(name) ?? "" : "";
        return index == 0 && value.Length > 0;
    }
}

/// <summary>
/// What a protocol tells the policy about one request, command or connection. A protocol fills the attributes
/// it knows; an attribute left unset makes every condition on it fail to match (SPEC 2.1).
/// Reused per connection (<see cref="Reset"/>) so that asking allocates nothing.
/// </summary>
public sealed class RequestAttributes
{
    public IPAddress? Source;
    public string? User;
    public string? Host;
    public int Port = -1;
    public string? Method;
    public string? Path;
    public string? Url;
    public IHeaderSource? Headers;
    public string? ContentType;
    public string? Command;
    public string? MailFrom;
    public IReadOnlyList<string>? RcptTo;
    /// <summary>Body or message size in bytes; -1 when unknown.</summary>
    public long Size = -1;
    public string? Sni;
    /// <summary>The moment to judge time windows at; null means now (local time).</summary>
    public DateTime? Time;
    /// <summary>
    /// Set while an address that <see cref="Host"/> resolved to is judged (<see cref="CompiledPolicy.JudgeAddress"/>):
    /// `host` conditions then see this address, as if the client had asked for it.
    /// </summary>
    public IPAddress? Address;
    /// <summary>The protocols an HTTP request asks to upgrade to (`Upgrade:` tokens, or HTTP/2's `:protocol`), comma-separated.</summary>
    public string? Upgrade;
    /// <summary>Whether `path` and `url` rules ignore case: the listener's `path_case` (insensitive unless said).</summary>
    public bool PathIgnoreCase = true;

    public void Reset()
    {
        Source = null; User = null; Host = null; Port = -1; Method = null; Path = null; Url = null;
        Headers = null; ContentType = null; Command = null; MailFrom = null; RcptTo = null; Size = -1;
        Sni = null; Time = null; Address = null; Upgrade = null; PathIgnoreCase = true;
    }

    /// <summary>Clears what belongs to one request but keeps the connection's (source, user).</summary>
    public void ResetRequest()
    {
        Host = null; Port = -1; Method = null; Path = null; Url = null; Headers = null; ContentType = null;
        Command = null; Size = -1; Sni = null; Time = null; Address = null; Upgrade = null;
    }
}
