/** DATABASE_URL as it may be logged or printed: a password in it is replaced by "***". */
export function withoutPassword(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    if (!url.password) return databaseUrl;
    url.password = '***';
    return url.toString();
  } catch {
    return databaseUrl;
  }
}
